# memcached outages seen from the client: a stopped node (no answer) costs one
# MsmOperationTimeout (500 ms here), then it is skipped; a killed node is logged
# down ONCE (MSM00101), not per request; a restarted node is logged back (MSM00103);
# with every node down requests still answer 200 within MsmOperationTimeout per node
# tried, and MSM00105 is logged at most once per MsmNodeRetry (1 s here). Log lines
# name sessions by their tag, never by their id.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Time::HiRes qw(time sleep);

plan tests => 39, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my %port = (n1 => 21301, n2 => 21302, n3 => 21303);
my %mc = map { $_ => MsmTest::memcached(port => $port{$_}) } sort keys %port;
my %next = (n1 => 'n2', n2 => 'n3', n3 => 'n1');
my $COOKIE = qr/^([0-9a-f]{32})-(n[123])$/;
my $TIMEOUT = 0.5;      # MsmOperationTimeout 500 (t/conf/extra.conf.in)
my $SLACK   = 0.2;

ok(MsmTest::wait_nodes_live([qw(n1 n2 n3)], timeout => 10), 'n1-n3 live for mod_msm');

sub count { my ($text, $re) = @_; my $n = () = $text =~ /$re/g; return $n }
sub create_session {
    my ($c, $val) = @_;
    my $r = $c->get("/msm/app.cgi?op=set&k=v&v=$val");
    my ($hex, $node) = ($r->cookie('MSMSESSION') // '') =~ $COOKIE;
    return ($hex, $node);
}
sub wait_backup {       # the same key on the next node, naming $node as primary
    my ($hex, $node) = @_;
    return MsmTest::wait_until(sub {
        (($mc{ $next{$node} }->copy($hex) || {})->{primary} // '') eq $node }, timeout => 5);
}

# baseline
my $c = MsmTest::client();
my ($hex, $N) = create_session($c, 'stop');
ok($hex && $N, "session created on $N") or BAIL_OUT('no session');
ok(wait_backup($hex, $N), "its backup is on $next{$N}");
my $base_t = $c->get('/msm/app.cgi?op=read')->elapsed;
diag(sprintf 'baseline read: %.3f s', $base_t);

# ---------------------------------------------------------------- SIGSTOP the session's node
my $mark = MsmTest::log_mark();
$mc{$N}->sigstop->wait_stopped;     # no thread of it answers any more
my $r = $c->get('/msm/app.cgi?op=read');
diag(sprintf 'read with %s stopped: %.3f s, session %s, Set-Cookie %s', $N, $r->elapsed,
     explain($r->session), join(' ', $r->set_cookies) || '-');
is($r->status, 200, "$N stopped: 200") or diag($r->dump);
cmp_ok($r->elapsed, '<', $TIMEOUT + $SLACK,
       sprintf('%s stopped: answered within MsmOperationTimeout + 200 ms (%.3f s)', $N, $r->elapsed));
# deterministic (README "Reading"): the cookie's node does not answer, so the
# other live nodes are asked; the backup (checked above) is the newest copy and
# its primary is dead, so the session is served from it and moves there (the
# cookie becomes <same hex>-<backup node>, MSM00110)
is_deeply($r->session, { v => 'stop' }, "$N stopped: the session is served from its backup on $next{$N}");
is($r->cookie('MSMSESSION') // '', "$hex-$next{$N}",
   "relocated to the backup's node $next{$N}: new cookie, same hex");
$r = $c->get('/msm/app.cgi?op=read');
is($r->status, 200, "$N still stopped, next request: 200");
cmp_ok($r->elapsed, '<', $TIMEOUT,
       sprintf('... the dead node is skipped: no timeout waited (%.3f s)', $r->elapsed));
my $log = MsmTest::log_since($mark);
is(count($log, qr/MSM00101: memcached node $N /), 1, "MSM00101 ($N down) logged once");

$mc{$N}->sigcont;
$mark = MsmTest::log_mark();
ok(MsmTest::wait_nodes_live([$N], timeout => 10), "SIGCONT: $N live again after a probe");
$log = MsmTest::log_since($mark);
is(count($log, qr/MSM00103: memcached node $N /), 1, "MSM00103 ($N back) logged once");

# ---------------------------------------------------------------- kill -9 a node
my $c2 = MsmTest::client();
my ($hex2, $K) = create_session($c2, 'kill');
ok($hex2 && $K, "a second session on $K");
ok(wait_backup($hex2, $K), "its backup is on $next{$K}");
$mark = MsmTest::log_mark();
$mc{$K}->kill9;
my $t0 = time;
my (@st, @slow, $moved);
for my $i (1 .. 10) {
    my $cc = $c2;
    if ($i > 1) {           # the other 9: well-formed ids of unknown sessions on $K
        $cc = MsmTest::client();
        $cc->cookie(MSMSESSION => MsmTest::random_hex() . "-$K");
    }
    my $rr = $cc->get('/msm/app.cgi?op=read');
    push @st, $rr->status;
    push @slow, sprintf('%.3f', $rr->elapsed) if $rr->elapsed >= $TIMEOUT + $SLACK;
    if ($i == 1) {
        $moved = $rr->cookie('MSMSESSION');
        is_deeply($rr->session, { v => 'kill' }, "$K killed: the session is read from its backup");
    }
}
my $dur = time - $t0;
diag(sprintf '10 requests with %s killed took %.2f s', $K, $dur);
is_deeply(\@st, [(200) x 10], "$K killed: 10 requests, all 200");
is_deeply(\@slow, [], '... each within MsmOperationTimeout + 200 ms');
like($moved // '', qr/^$hex2-(?!$K\b)n[123]$/, '... and moved to a live node: new cookie, same hex');
$log = MsmTest::log_since($mark);
is(count($log, qr/MSM00101: memcached node $K /), 1,
   "MSM00101 ($K down) logged ONCE for 10 requests, not per request");
cmp_ok(count($log, qr/MSM00102: memcached node $K /), '<=', int($dur) + 1,
       'MSM00102 (still down) at most once per retry interval');
my $tag2 = MsmTest::session_tag($hex2) // 'none';
cmp_ok(count($log, qr/MSM00110: session $tag2 moved to node (?!$K\b)n[123]\b/), '==', 1,
       "MSM00110 (relocated) logged, naming the session by its tag $tag2");
my @ids = MsmTest::ids_in($log);
is_deeply(\@ids, [], 'no session id (32 hex digits) in the error_log (relocation, not-found lines)')
    or diag(join "\n", grep { my $l = $_; grep { index($l, $_) >= 0 } @ids } split /\n/, $log);
is_deeply($c2->get('/msm/app.cgi?op=read')->session, { v => 'kill' },
          'the relocated session reads back through its new cookie');

# ---------------------------------------------------------------- restart it
$mark = MsmTest::log_mark();
$mc{$K}->restart;
ok(MsmTest::wait_nodes_live([$K], timeout => 10), "$K restarted (empty): live again");
$log = MsmTest::log_since($mark);
is(count($log, qr/MSM00103: memcached node $K /), 1, "MSM00103 ($K back) logged once");

# ---------------------------------------------------------------- all three stopped
ok(MsmTest::wait_nodes_live([qw(n1 n2 n3)], timeout => 10), 'all nodes live again');
my $c3 = MsmTest::client();
my ($hex3, $P) = create_session($c3, 'all');
ok($hex3, "a session on $P");
ok(wait_backup($hex3, $P), 'with its backup');
$_->sigstop for values %mc;
$r = $c3->get('/msm/app.cgi?op=read');
my $bound = 3 * $TIMEOUT + $SLACK;
diag(sprintf 'read with all 3 nodes stopped: %.3f s', $r->elapsed);
is($r->status, 200, 'all nodes stopped: read answers 200');
cmp_ok($r->elapsed, '<', $bound,
       sprintf('... within 3 x MsmOperationTimeout + 200 ms (%.3f s < %.1f s)', $r->elapsed, $bound));
# all three are marked dead now; once MsmNodeRetry has passed for each, a write of a
# new session probes them: each node at most once, so again within 3 x 500 ms + 200 ms
sleep 1.1;
$r = MsmTest::client()->get('/msm/app.cgi?op=set&k=v&v=new');
diag(sprintf 'new-session write with all 3 nodes stopped, probes due: %.3f s', $r->elapsed);
is($r->status, 200, 'all nodes stopped, probes due: a new session write answers 200');
cmp_ok($r->elapsed, '<', $bound,
       sprintf('... within 3 x MsmOperationTimeout + 200 ms (%.3f s < %.1f s)', $r->elapsed, $bound));
$_->sigcont for values %mc;

# ---------------------------------------------------------------- all three killed
$_->kill9 for values %mc;
$mark = MsmTest::log_mark();
$t0 = time;
my (@codes, @times);
my $i = 0;
while (time - $t0 < 3.2 && $i < 200) {
    my $rr = $i++ % 2
        ? MsmTest::client()->get('/msm/app.cgi?op=set&k=v&v=x')
        : $c3->get('/msm/app.cgi?op=incr&k=n');
    push @codes, $rr->status;
    push @times, $rr->elapsed;
    sleep 0.05;
}
$dur = time - $t0;
my ($max) = sort { $b <=> $a } @times;
diag(sprintf 'all nodes killed: %d requests in %.2f s, slowest %.3f s', scalar(@codes), $dur, $max // 0);
is(scalar(grep { $_ != 200 } @codes), 0, 'all nodes killed: every request answers 200 (' . scalar(@codes) . ')');
cmp_ok($max // 99, '<', $bound, 'all nodes killed: each within 3 x 500 ms + 200 ms');
$log = MsmTest::log_since($mark);
my @t105 = map { /\[\w+ \w+ \d+ (\d\d):(\d\d):(\d\d(?:\.\d+)?) \d+\]/ ? $1 * 3600 + $2 * 60 + $3 : () }
           grep { /MSM00105/ } split /\n/, $log;
my $n105 = count($log, qr/MSM00105/);
diag("MSM00105 logged $n105 times in " . sprintf('%.2f s', $dur));
cmp_ok($n105, '>=', 1, 'MSM00105 (no node reachable) is logged');
cmp_ok($n105, '<=', int($dur) + 1, 'MSM00105 at most once per second');
my @gaps = map { $t105[$_] - $t105[$_ - 1] } 1 .. $#t105;
$_ += 86400 for grep { $_ < 0 } @gaps;
is(scalar(grep { $_ < 0.95 } @gaps), 0, 'consecutive MSM00105 lines are >= 1 s apart ('
   . join(',', map { sprintf '%.2f', $_ } @gaps) . ')');
unlike($log, qr/exit signal|Segmentation/, 'no crashed child');

# ---------------------------------------------------------------- leave the nodes live
$_->restart for values %mc;
ok(MsmTest::wait_nodes_live([qw(n1 n2 n3)], timeout => 10), 'restarted: n1-n3 live again');
