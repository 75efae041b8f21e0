# MsmLocking Auto (/lock-auto/, MsmLockTimeout 1000): GET and HEAD are read-only:
# no lock (no add, no delete, no lock: key ever), no write (a change the app
# makes is dropped and logged at info, MSM00143); POST locks (add + gets +
# delete, a compare-and-delete "md" on memcached) and writes. Checked with
# memcached's own counters (stats deltas; MsmTest::mc_ops counts the once-a-second
# read of the published node failures apart). The lock is lock:t:<hex>, the
# session the copy "MSM1 S ...\n<value>" under t:<hex>.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Time::HiRes qw(time sleep);

plan tests => 33, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my %port = (n1 => 21301, n2 => 21302, n3 => 21303);
my %mc = map { $_ => MsmTest::memcached(port => $port{$_}) } sort keys %port;
sleep 1.2;    # dead marks of an earlier test file (MsmNodeRetry 1) expire

# operations per memcached command (MsmTest::mc_ops: get, touch, set, delete, ...)
sub fmt {
    my $d = shift;
    return join ' ', map { "$_=" . ($d->{$_} // 0) } @MsmTest::MC_OPS;
}
sub settled_snap { return MsmTest::mc_ops_settled(\%mc) }
sub delta { return MsmTest::mc_ops_delta(@_) }
sub lock_keys { return map { my $n = $_; map { "$n:$_" } grep { /^lock:/ } $mc{$n}->keys } sort keys %mc }

my $c = MsmTest::client();
my $r;
ok(MsmTest::wait_until(sub {
    $c->clear_cookies;
    $r = $c->get('/msm/app.cgi?op=set&k=c&v=5');
    return $r->status == 200 && ($c->cookie('MSMSESSION') // '') =~ /^[0-9a-f]{32}-n[123]$/;
}, timeout => 10, interval => 0.3), 'session created (c=5)') or diag($r->dump);
my $sid = $c->cookie('MSMSESSION') // '';
my ($node) = $sid =~ /-(n[123])$/;
$node //= 'n1';
my $lk = MsmTest::lock_key($sid);

sub stored_c {
    my $v = ($mc{$node}->copy($sid) || {})->{payload} // '';
    return $v =~ /(?:^|&)c=(\d+)/ ? $1 : undef;
}

# a request in a forked worker while the test looks at memcached's keys:
# returns (response summary, lock keys seen while it ran)
sub during {
    my ($method, $path) = @_;
    my @res = MsmTest::parallel(2, sub {
        my $i = shift;
        if ($i == 0) {
            my $w = MsmTest::client();
            $w->cookie(MSMSESSION => $sid);
            my $x = $method eq 'POST' ? $w->post($path, { x => 1 }) : $w->request($method, $path);
            return { status => $x->status, value => $x->field('value'), elapsed => $x->elapsed };
        }
        my (%seen, $n);
        my $t0 = time;
        while (time - $t0 < 0.9 && $n++ < 200) {     # the request sleeps 1000 ms
            $seen{$_}++ for lock_keys();
            sleep 0.05;
        }
        return { seen => [sort keys %seen], polls => $n };
    }, timeout => 30);
    return @res;
}

settled_snap();

# ---------------------------------------------------------------- GET read
my $s0 = settled_snap();
$r = $c->get('/lock-auto/app.cgi?op=read');
my $d = delta($s0, settled_snap());
diag('GET op=read under Auto: ' . fmt($d->{_sum}));
ok($r->status == 200 && ($r->session // {})->{c} == 5, 'GET op=read: 200, c=5') or diag($r->dump);
is($d->{_sum}{set}, 0, 'GET read: no add, no set (cmd_set delta 0)');
is($d->{_sum}{delete}, 0, 'GET read: no delete');
is($d->{_sum}{get}, 0, 'GET read: no gets (no lock release check)');
is($d->{_sum}{touch}, 1, 'GET read: the read itself (one gats)');

# ---------------------------------------------------------------- GET incr: dropped
my $mark = MsmTest::log_mark();
$s0 = settled_snap();
my ($g, $gk) = during('GET', '/lock-auto/app.cgi?op=incr&k=c&sleep_ms=1000');
$d = delta($s0, settled_snap());
my $log = MsmTest::log_since($mark);
diag('GET op=incr under Auto: ' . fmt($d->{_sum}) . "; lock keys seen during it: @{ $gk->{seen} || [] } ($gk->{polls} polls)");
is($g->{status}, 200, 'GET op=incr: 200');
is($g->{value}, 6, 'GET op=incr: the app saw c=5 and answered 6');
is_deeply($gk->{seen}, [], 'GET op=incr: no lock: key in memcached while it ran');
is($d->{_sum}{set}, 0, 'GET incr: no add, no set (cmd_set delta 0): the change is not written');
is($d->{_sum}{delete}, 0, 'GET incr: no delete');
is(stored_c(), 5, 'GET incr: memcached still holds c=5');
like($log, qr/\[[^\]]*:info\].*MSM00143.*GET/, 'MSM00143 logged at info for the dropped GET change')
    or diag($log);
is_deeply($c->get('/lock-auto/app.cgi?op=read')->session, { c => 5 }, 'GET incr: a new read sees c=5');

# ---------------------------------------------------------------- HEAD incr: dropped
$mark = MsmTest::log_mark();
$s0 = settled_snap();
$r = $c->head('/lock-auto/app.cgi?op=incr&k=c');
$d = delta($s0, settled_snap());
$log = MsmTest::log_since($mark);
diag('HEAD op=incr under Auto: ' . fmt($d->{_sum}));
is($r->status, 200, 'HEAD op=incr: 200');
is($d->{_sum}{set}, 0, 'HEAD incr: no add, no set');
is($d->{_sum}{delete}, 0, 'HEAD incr: no delete');
is($d->{_sum}{get}, 0, 'HEAD incr: no gets');
is(stored_c(), 5, 'HEAD incr: memcached still holds c=5');
like($log, qr/\[[^\]]*:info\].*MSM00143.*HEAD/, 'MSM00143 logged for the dropped HEAD change') or diag($log);

# ---------------------------------------------------------------- POST incr: locked, written
$mark = MsmTest::log_mark();
$s0 = settled_snap();
my ($p, $pk) = during('POST', '/lock-auto/app.cgi?op=incr&k=c&sleep_ms=1000');
$d = delta($s0, settled_snap());
$log = MsmTest::log_since($mark);
diag("POST op=incr under Auto: on $node " . fmt($d->{$node}) . '; all nodes ' . fmt($d->{_sum})
     . "; lock keys seen during it: @{ $pk->{seen} || [] }");
is($p->{status}, 200, 'POST op=incr: 200');
is($p->{value}, 6, 'POST op=incr: 6');
is_deeply($pk->{seen}, ["$node:$lk"], "POST: the lock key $lk was on the session's node while it ran");
is($d->{$node}{set}, 2, "POST: cmd_set +2 on $node (add of the lock, set of the session)");
is($d->{$node}{get}, 1, "POST: cmd_get +1 on $node (gets of the lock at release)");
is($d->{$node}{delete}, 1, "POST: one delete on $node (the lock released: md, compare-and-delete)");
is($d->{_sum}{set}, 3, 'POST: cmd_set +3 over all nodes (lock add, session cas, backup cas)');
is(stored_c(), 6, 'POST: memcached holds c=6');
ok(!grep({ $_ eq $lk } $mc{$node}->keys), 'POST: no lock key left');
unlike($log, qr/MSM00143/, 'POST: nothing dropped (no MSM00143)');
is_deeply($c->get('/lock-auto/app.cgi?op=read')->session, { c => 6 }, 'a GET reads the POST\'s c=6');

# ---------------------------------------------------------------- POST without session: no lock
my $c2 = MsmTest::client();
$s0 = settled_snap();
$r = $c2->post('/lock-auto/app.cgi?op=read', { x => 1 });
$d = delta($s0, settled_snap());
ok($r->status == 200 && !defined $r->cookie('MSMSESSION'), 'POST without a session: 200, no cookie');
is($d->{_sum}{set} + $d->{_sum}{get} + $d->{_sum}{touch}
   + $d->{_sum}{delete}, 0,
   'POST without a session: no memcached operation (no lock for no session)');
