# Sticky mode: a back end whose session was taken over by another must not
# serve its older local copy (README "Takeover"). Back ends a and b (MsmSticky
# On, routes a / b) share memcached m1-m3; requests go straight to their ports,
# with the cookie a balancer would send:
#   (i)   S is served by a (counter 5, cookie .a); b takes it over (the .a
#         cookie arrives at b, as after a balancer failover): 6, cookie .b.
#         a, still running with 5 in its local tier, gets the .b cookie: it
#         must read memcached (6), move the cookie back to .a, log MSM00153
#         (debug: "session <tag> taken over from route b"; never the id).
#   (ii)  the same, but the client sends the OLD .a cookie to a: README trusts
#         the local copy for own-route cookies, so a stale answer is expected;
#         the observed result is reported (diag), not asserted.
#   (iii) a restarted after b took over: its local tier is empty, the old .a
#         cookie gets memcached's current content.
#   (iv)  ... and keeps getting it: the copy names its writer's route (b), so a
#         serves it without keeping it locally; b increments and then logs
#         out, and the old .a cookie at a sees 7, then no session (found by
#         t/90_lifecycle.t: a kept b's copy and served it after b's logout).
#   (v)   b takes over by a read only: it writes the copy again naming route b
#         (a claim), so that a, restarted, does not keep its own older copy
#         either when the old .a cookie comes back; b's later writes are seen.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use MsmSticky;
use Time::HiRes qw(time sleep);

plan tests => 40, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my @mc = MsmSticky::memcacheds();
my %be = (a => MsmSticky::backend('a'), b => MsmSticky::backend('b'));
ok(MsmSticky::wait_ready($be{a}->url) && MsmSticky::wait_ready($be{b}->url),
   'back ends a and b reach memcached');

# the primary write of a sticky back end happens after the response: wait for it
sub mc_counter_is {
    my ($cookie, $n) = @_;
    return MsmTest::wait_until(sub {
        my $s = MsmSticky::mc_session(\@mc, $cookie);
        return $s && ($s->{counter} // -1) == $n;
    }, timeout => 5, interval => 0.05);
}

# the copy on the node the cookie names (MsmTest::parse_copy)
sub primary_copy {
    my $cookie = shift;
    my (undef, $node) = MsmSticky::cookie_parts($cookie);
    my ($m) = grep { $_->port == MsmSticky::node_port($node // 'm1') } @mc;
    return $m->copy($cookie);
}

# a session with counter=5 on a, then taken over by b (counter 6); returns the cookies
sub a_then_b {
    my $label = shift;
    my $ca = MsmTest::client(base => $be{a}->url);
    my @v = map { $ca->get('/msm/app.cgi?op=incr&k=counter')->field('value') // 'undef' } 1 .. 5;
    my $ck_a = $ca->cookie('MSMSESSION') // '';
    my ($hex, $node, $route) = MsmSticky::cookie_parts($ck_a);
    ok("@v" eq '1 2 3 4 5' && ($route // '') eq 'a', "$label: a counts 1..5, cookie route a ($ck_a)")
        or diag("values @v");
    ok(mc_counter_is($ck_a, 5), "$label: memcached holds counter=5");

    my $cb = MsmTest::client(base => $be{b}->url);
    $cb->cookie(MSMSESSION => $ck_a);           # what the balancer sends when a fails
    my $r = $cb->get('/msm/app.cgi?op=incr&k=counter');
    my $ck_b = $cb->cookie('MSMSESSION') // '';
    ok($r->status == 200 && ($r->field('value') // 0) == 6 && ($r->header('X-Backend') // '') eq 'b',
       "$label: b takes over and increments to 6") or diag($r->dump);
    is($ck_b, defined $hex ? "$hex-$node.b" : 'x', "$label: b moved the cookie to route b");
    ok(mc_counter_is($ck_b, 6), "$label: memcached holds counter=6");
    return ($ck_a, $ck_b);
}

# ---- (i) a still running, the .b cookie goes to a
my ($s_a, $s_b) = a_then_b('S');
my $mark = MsmTest::log_mark($be{a}->error_log);
my $c = MsmTest::client(base => $be{a}->url);
$c->cookie(MSMSESSION => $s_b);
my $r = $c->get('/msm/app.cgi?op=read');
is(($r->session // {})->{counter}, 6, '(i) a gets the .b cookie: reads memcached, counter=6 (not its stale 5)')
    or diag($r->dump);
is($r->cookie('MSMSESSION'), $s_a, '(i) a moves the cookie back to route a');
my ($hex) = MsmSticky::cookie_parts($s_a);
my $tag = MsmTest::session_tag($hex) // 'none';
ok(MsmTest::wait_until(sub { MsmTest::log_since($mark) =~ /MSM00153: session $tag taken over from route b/ },
                       timeout => 2),
   "(i) a logs MSM00153 (it took the session over from route b: memcached's copy replaced its older local one), by its tag $tag")
    or diag(MsmTest::log_since($mark));
my @ids = MsmTest::ids_in(MsmTest::log_since($mark));
is_deeply(\@ids, [], '(i) no session id (32 hex digits) in a\'s error_log');
my $base = MsmSticky::mc_ops(\@mc);
$r = $c->get('/msm/app.cgi?op=read');
is(($r->session // {})->{counter}, 6, '(i) next read on a with the .a cookie: 6 (local tier refreshed)');
is(MsmSticky::ops_delta($base, MsmSticky::mc_ops(\@mc))->{total}, 0, '(i) ... from the local tier (0 memcached ops)');
$r = $c->get('/msm/app.cgi?op=incr&k=counter');
is($r->field('value'), 7, '(i) a continues: incr -> 7');
ok(mc_counter_is($s_a, 7), '(i) memcached holds counter=7');

# ---- (ii) the OLD .a cookie goes to a after b changed the session (report only)
my ($t_a, $t_b) = a_then_b('T');
$mark = MsmTest::log_mark($be{a}->error_log);
$c = MsmTest::client(base => $be{a}->url);
$c->cookie(MSMSESSION => $t_a);
$r = $c->get('/msm/app.cgi?op=read');
my $seen_read = ($r->session // {})->{counter} // 'none';
$r = $c->get('/msm/app.cgi?op=incr&k=counter');
my $seen_incr = $r->field('value') // 'none';
my $after = '?';
MsmTest::wait_until(sub {
    my $s = MsmSticky::mc_session(\@mc, $t_a);
    $after = $s ? $s->{counter} // 'none' : 'missing';
    return $after eq $seen_incr;
}, timeout => 2);
diag("(ii) old .a cookie sent to a after b took over (memcached 6, a's local copy 5): "
     . "read answered counter=$seen_read"
     . ($seen_read eq '5' ? ' (stale local copy)' : $seen_read eq '6' ? ' (memcached)' : '')
     . "; incr answered $seen_incr; memcached then holds $after"
     . ($seen_incr eq '6' ? ' (b\'s increment was overwritten: lost update)' : ''));

# ---- (iii) a restarted after b took over: the old .a cookie gets memcached's content
my ($u_a, $u_b) = a_then_b('U');
$be{a}->stop;
$be{a} = MsmSticky::backend('a');
ok(MsmSticky::wait_ready($be{a}->url), '(iii) a restarted');
$c = MsmTest::client(base => $be{a}->url);
$c->cookie(MSMSESSION => $u_a);
$r = $c->get('/msm/app.cgi?op=read');
is(($r->session // {})->{counter}, 6, '(iii) restarted a, old .a cookie: counter=6 from memcached')
    or diag($r->dump);

# ---- (iv) the restarted a does not keep b's copy
is((primary_copy($u_b) // {})->{route}, 'b', '(iv) memcached\'s copy names its writer\'s route: b');
my $cb = MsmTest::client(base => $be{b}->url);
$cb->cookie(MSMSESSION => $u_b);
$r = $cb->get('/msm/app.cgi?op=incr&k=counter');
is($r->field('value'), 7, '(iv) b increments to 7 (.b cookie)');
ok(mc_counter_is($u_b, 7), '(iv) memcached holds counter=7');
$r = $c->get('/msm/app.cgi?op=read');
is(($r->session // {})->{counter}, 7, '(iv) a, old .a cookie: 7 (memcached, not the 6 it read before)')
    or diag($r->dump);
$r = $cb->get('/msm/app.cgi?op=destroy');
is($r->status, 200, '(iv) b: logout');
$r = $c->get('/msm/app.cgi?op=read');
ok($r->status == 200 && !%{ $r->session // {} }, '(iv) a, old .a cookie after the logout: no session')
    or diag($r->dump);

# ---- (v) b takes over with a read only; a restarted does not keep its own older copy
my $ca = MsmTest::client(base => $be{a}->url);
my @v = map { $ca->get('/msm/app.cgi?op=incr&k=counter')->field('value') // 'undef' } 1 .. 3;
my $v_a = $ca->cookie('MSMSESSION') // '';
ok("@v" eq '1 2 3' && mc_counter_is($v_a, 3), "(v) a counts 1..3 ($v_a)");
$be{a}->stop;
$cb = MsmTest::client(base => $be{b}->url);
$cb->cookie(MSMSESSION => $v_a);
$r = $cb->get('/msm/app.cgi?op=read');
my $v_b = $cb->cookie('MSMSESSION') // '';
ok(($r->session // {})->{counter} == 3 && $v_b =~ /\.b$/, "(v) a down: b takes over by a read (3, cookie $v_b)");
ok(MsmTest::wait_until(sub { ((primary_copy($v_b) // {})->{route} // '') eq 'b' }, timeout => 2),
   '(v) the read rewrote the copy naming route b');
$be{a} = MsmSticky::backend('a');
ok(MsmSticky::wait_ready($be{a}->url), '(v) a restarted');
$c = MsmTest::client(base => $be{a}->url);
$c->cookie(MSMSESSION => $v_a);
$r = $c->get('/msm/app.cgi?op=read');
is(($r->session // {})->{counter}, 3, '(v) a, old .a cookie: 3');
$r = $cb->get('/msm/app.cgi?op=incr&k=counter');
is($r->field('value'), 4, '(v) b increments to 4');
ok(mc_counter_is($v_b, 4), '(v) memcached holds counter=4');
$r = $c->get('/msm/app.cgi?op=read');
is(($r->session // {})->{counter}, 4, '(v) a, old .a cookie: 4, not the 3 it read before')
    or diag($r->dump);

$_->stop for values %be;
