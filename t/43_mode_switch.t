# Switching MsmSticky logs nobody out (README "Sticky mode": memcached holds
# every session in both modes). Sessions are created on a back end with
# MsmSticky Off; it is restarted with MsmSticky On / MsmRoute a: the sessions
# keep their content and their cookies gain ".a" on the next response; then
# back to Off: the sessions (and a change made in sticky mode) are still there.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use MsmSticky;
use Time::HiRes qw(time sleep);
# eq_hash: Test::More's deep comparison (no assertion)

plan tests => 16, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my $PORT = 21366;
my $N = 5;
my @mc = MsmSticky::memcacheds();

sub start_backend {
    return MsmSticky::backend('a', sticky => shift, port => $PORT, name => 'sticky-switch');
}

# ---- non-sticky: N sessions with some content
my $h = start_backend(0);
ok(MsmSticky::wait_ready($h->url), 'MsmSticky Off back end reaches memcached');
my @s;
for my $i (1 .. $N) {
    my $c = MsmTest::client(base => $h->url);
    $c->get("/msm/app.cgi?op=set&k=user&v=u$i&k2=color&v2=c$i");
    my $r = $c->get('/msm/app.cgi?op=incr&k=counter');
    push @s, { c => $c, cookie => $c->cookie('MSMSESSION') // '', status => $r->status,
               want => { user => "u$i", color => "c$i", counter => 1 } };
}
ok(!(grep { $_->{status} != 200 || $_->{cookie} !~ /^[0-9a-f]{32}-m[123]$/ } @s),
   "Off: $N sessions, cookies <hex>-<node> without a route")
    or diag(join ' ', map { "$_->{status}:$_->{cookie}" } @s);
# the backup copies are written after the response: let them land before the stop
ok(MsmTest::wait_until(sub {
       !grep { !MsmSticky::mc_session(\@mc, $_->{cookie}, backup => 1) } @s }, timeout => 5),
   'Off: primary and backup copies are in memcached');
# every session copy in memcached, as "<port>:<key>": a destroyed session (the
# probe of wait_ready) leaves its tombstone behind, which is no session
# (exact gets of the test's sessions on every node, and of any other session key a
# metadump lists: a metadump may leave out an item that was just read)
sub session_copies {
    my %hex = map { (MsmTest::cookie_hex($_->{cookie}) // 'x') => 1 } @s;
    $hex{$_} = 1 for map { /^t:([0-9a-f]{32})$/ ? $1 : () } map { $_->keys } @mc;
    my %k;
    for my $m (@mc) {
        for my $h (grep { $_ ne 'x' } keys %hex) {
            my $c = $m->copy($h);
            $k{ $m->port . ":t:$h" } = 1 if $c && $c->{kind} eq 'S';
        }
    }
    return %k;
}
my %keys0 = session_copies();

# ---- restart with MsmSticky On / MsmRoute a
$h->stop;
$h = start_backend(1);
ok(MsmSticky::wait_ready($h->url), 'restarted with MsmSticky On / MsmRoute a');
my (@content, @cookie);
for my $x (@s) {
    my $r = $x->{c}->get('/msm/app.cgi?op=read');
    push @content, $x->{cookie} unless $r->status == 200 && eq_hash($r->session // {}, $x->{want});
    my $set = $r->cookie('MSMSESSION');
    push @cookie, ($set // 'none') unless ($set // '') eq "$x->{cookie}.a";
}
ok(!@content, "On: all $N sessions are still there with the same content")
    or diag('wrong: ' . join ' ', @content);
ok(!@cookie, "On: the next response moves each cookie to <hex>-<node>.a (same id)")
    or diag('got: ' . join ' ', @cookie);
my $base = MsmSticky::mc_ops(\@mc);
my $again = grep {
    my $r = $_->{c}->get('/msm/app.cgi?op=read');
    $r->status == 200 && eq_hash($r->session // {}, $_->{want}) && !defined $r->cookie('MSMSESSION');
} @s;
sleep 0.3;
is($again, $N, 'On: reads with the .a cookie answer the same content, no new cookie');
is(MsmSticky::ops_delta($base, MsmSticky::mc_ops(\@mc))->{total}, 0,
   'On: ... served by the local tier (0 memcached operations)');
my $r = $s[0]{c}->get('/msm/app.cgi?op=incr&k=counter');
is($r->field('value'), 2, 'On: a change in sticky mode (incr -> 2)');
$s[0]{want}{counter} = 2;
ok(MsmTest::wait_until(sub {
       my $p = MsmSticky::mc_session(\@mc, $s[0]{cookie});
       my $b = MsmSticky::mc_session(\@mc, $s[0]{cookie}, backup => 1);
       $p && $b && ($p->{counter} // 0) == 2 && ($b->{counter} // 0) == 2 }, timeout => 5),
   'On: the change reached memcached (primary and backup, after the response)');
my %keys1 = session_copies();
is_deeply([sort keys %keys1], [sort keys %keys0],
          'On: memcached holds the same session copies, on the same nodes (no session was copied or lost)');

# ---- back to MsmSticky Off
$h->stop;
$h = start_backend(0);
ok(MsmSticky::wait_ready($h->url), 'restarted with MsmSticky Off');
@content = ();
my @cookies_seen;
for my $x (@s) {
    my $r = $x->{c}->get('/msm/app.cgi?op=read');      # the client still sends the .a cookie
    push @content, $x->{cookie} unless $r->status == 200 && eq_hash($r->session // {}, $x->{want});
    push @cookies_seen, $r->cookie('MSMSESSION') // 'none';
}
ok(!@content, "Off again: all $N sessions are still there (the sticky-mode change too)")
    or diag('wrong: ' . join ' ', @content);
diag('Off again, cookies sent back on the first read: ' . join ' ', @cookies_seen);
$r = $s[1]{c}->get('/msm/app.cgi?op=incr&k=counter');
is($r->field('value'), 2, 'Off again: a session with a .a cookie can be changed (incr -> 2)');
ok(MsmTest::wait_until(sub {
       my $p = MsmSticky::mc_session(\@mc, $s[1]{cookie});
       $p && ($p->{counter} // 0) == 2 }, timeout => 3),
   'Off again: the change is in memcached');
is(($s[1]{c}->get('/msm/app.cgi?op=read')->session // {})->{counter}, 2,
   'Off again: read back 2');

$h->stop;

