# A memcached node that hangs (SIGSTOP) (issue 4): the first request with a
# session on it pays at most MsmOperationTimeout (500 ms) + 300 ms; the node is
# then marked dead in shared memory, so the following requests — from several
# clients, served by different httpd children — skip it and answer in < 250 ms
# (half of MsmOperationTimeout: none of them waits for the stopped node).
# After SIGCONT and MsmNodeRetry (1 s) the node is probed and used again. A backup is
# the same key t:<hex> on the next node, naming the primary's node in its header;
# log lines name sessions by their tag, never by their id.
#
# The followers' latency is measured on a static file under /msm/ (mod_session's
# SessionEnv loads, and mod_msm relocates, the session for every request there):
# it times mod_msm, not the fork+perl start-up of the CGI, which alone can take
# tens of ms on a loaded 2-core machine. Each follower connection is keep-alive,
# so the CGI request that follows on the same connection names the child that
# served it (prefork binds a connection to one child) and checks the content.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Time::HiRes qw(time sleep);

plan tests => 19, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my @ORDER = qw(n1 n2 n3);
my %PORT  = (n1 => 21301, n2 => 21302, n3 => 21303);
my %NEXT  = (n1 => 'n2', n2 => 'n3', n3 => 'n1');
my $ID    = qr/^([0-9a-f]{32})-(n[123])$/;
my $OP_TIMEOUT = 0.5;    # MsmOperationTimeout 500
my $RETRY      = 1;      # MsmNodeRetry 1
# a request that skips a dead node. Half of MsmOperationTimeout: a request that sent
# anything to the stopped node waits >= 500 ms. (It was 50 ms; on the loaded 2-core
# machine the first request of each of the 3 forked clients takes 60-200 ms even with
# every node live and no relocation, so 50 ms measured the machine, not mod_msm.)
my $FAST       = 0.250;

my %mc = map { $_ => MsmTest::memcached(port => $PORT{$_}) } @ORDER;
ok(MsmTest::wait_nodes_live(\@ORDER), 'mod_msm sees n1-n3 live');

# the node a node's copy of a session names as its primary ('' when it holds none)
sub primary_on { my ($node, $sid) = @_; return (($mc{$node}->copy($sid) || {})->{primary} // '') }

# ------------------------------------------------ sessions; X = the node holding the most
my %by;
for my $i (1 .. 90) {
    my $c = MsmTest::client();
    my $val = "s$i-" . MsmTest::random_hex();
    my $r = $c->get("/msm/app.cgi?op=set&k=data&v=$val");
    my $sid = $r->cookie('MSMSESSION') // '';
    my ($hex, $node) = $sid =~ $ID;
    next unless $r->status == 200 && $node;
    push @{ $by{$node} }, { c => $c, sid => $sid, hex => $hex, val => $val };
    last if grep { @{ $by{$_} || [] } >= 8 } @ORDER;
}
my ($X) = sort { @{ $by{$b} || [] } <=> @{ $by{$a} || [] } } @ORDER;
my @onx = @{ $by{$X} || [] };
ok(@onx >= 8, scalar(@onx) . " sessions on $X (the node to stop)")
    or BAIL_OUT('cannot place 8 sessions on one node');
ok(MsmTest::wait_until(sub { !grep { primary_on($NEXT{$X}, $_->{sid}) ne $X } @onx },
                       timeout => 10), "their backups are on $NEXT{$X}");
my ($first, @followers) = @onx[0 .. 6];
my $reserved = $onx[7];          # not touched while $X is stopped

# baseline of the static request (node live), for the diag
my $base_worst = 0;
for my $s (@{ $by{$NEXT{$X}} || [] }[0 .. 2]) {
    next unless $s;
    my $r = $s->{c}->get('/msm/login.html');
    $base_worst = $r->elapsed if $r->elapsed > $base_worst;
}

# ------------------------------------------------ SIGSTOP: the first request pays the timeout
my $mark = MsmTest::log_mark();
$mc{$X}->sigstop->wait_stopped or diag("$X: not all memcached threads stopped yet");
my $r = $first->{c}->get('/msm/app.cgi?op=read');
my $t_first_end = time;
my $t1 = $r->elapsed;
diag(sprintf 'SIGSTOP %s: first request %.0f ms', $X, $t1 * 1000);
is($r->status, 200, 'first request after SIGSTOP: 200');
is(($r->session // {})->{data}, $first->{val}, 'first request: same content (read from the backup)');
cmp_ok($t1, '<=', $OP_TIMEOUT + 0.3, sprintf 'first request: %.0f ms <= MsmOperationTimeout + 300 ms', $t1 * 1000);
cmp_ok($t1, '>=', $OP_TIMEOUT * 0.9, 'first request did wait for the stopped node (sanity: the node hangs)');
my ($nhex, $nnode) = ($r->cookie('MSMSESSION') // '') =~ $ID;
ok($nhex && $nhex eq $first->{hex} && $nnode ne $X, "first request: moved off $X ("
   . ($r->cookie('MSMSESSION') // 'no cookie') . ')');

# ------------------------------------------------ the following requests skip the dead node
my $t0 = time;
my @res = MsmTest::parallel(3, sub {
    my $i = shift;
    my @out;
    for my $s (@followers[2 * $i, 2 * $i + 1]) {
        my $c = MsmTest::client(keep_alive => 1);
        $c->cookie(MSMSESSION => $s->{sid});
        my $start = time;
        my $st = $c->get('/msm/login.html');
        # same connection, so the same child: the CGI names it. (A CGI before the
        # static request would add mod_cgi's wait for the CGI's exit to it.)
        my $rd = $c->get('/msm/app.cgi?op=read');
        push @out, { sid => $s->{sid}, start => $start, el => $st->elapsed, status => $st->status,
                     cookie => $st->cookie('MSMSESSION') // '', pid => $rd->pid,
                     data => ($rd->session // {})->{data}, cgi_el => $rd->elapsed,
                     cgi_status => $rd->status, cgi_cookie => $rd->cookie('MSMSESSION') };
    }
    return \@out;
}, timeout => 30);
my @f = map { ref $_ eq 'ARRAY' ? @$_ : () } @res;
is(scalar @f, 6, '6 follower requests from 3 parallel clients') or diag(explain \@res);

# only requests that started well before the node is due for a probe (MsmNodeRetry
# after the failure) count: a probe may pay the timeout again, by design
my @in_window = grep { $_->{start} < $t_first_end + 0.6 * $RETRY } @f;
my @slow = grep { $_->{el} >= $FAST } @in_window;
my ($worst) = sort { $b <=> $a } map { $_->{el} } @f;
my ($cgi_worst) = sort { $b <=> $a } map { $_->{cgi_el} } @f;
diag(sprintf 'followers: %d requests (%d in the window), worst %.1f ms (static), %.1f ms (CGI read '
     . 'after); static baseline with live nodes %.1f ms', scalar @f, scalar @in_window,
     ($worst // 0) * 1000, ($cgi_worst // 0) * 1000, $base_worst * 1000);
ok(@in_window >= 4, scalar(@in_window) . ' follower requests ran before the next probe was due');
is(scalar @slow, 0, sprintf 'each follower request answered in < %d ms', $FAST * 1000)
    or diag(join "\n", map { sprintf '%s: %.1f ms', $_->{sid}, $_->{el} * 1000 } @slow);
my %pids = map { ($_->{pid} // 0) => 1 } @f;
ok(keys %pids >= 2 && !grep({ !$_->{pid} } @f),
   'served by ' . scalar(keys %pids) . ' different children (' . join(',', sort keys %pids) . ')')
    or diag(explain \@f);
my %val = map { $_->{sid} => $_->{val} } @followers;
my @bad = grep {
    my ($h, $n) = $_->{cookie} =~ $ID;
    !($_->{status} == 200 && $_->{cgi_status} == 200
      && ($_->{data} // '') eq $val{ $_->{sid} }
      && $h && $n ne $X && $_->{sid} eq "$h-$X" && !defined $_->{cgi_cookie})
} @f;
is(scalar @bad, 0, "followers: same content, moved off $X (<same hex>-<live node>)")
    or diag(explain \@bad);

my $log = MsmTest::log_since($mark);
my $down = () = $log =~ /MSM00101: memcached node $X /g;
is($down, 1, "MSM00101 for $X logged once (all children share the dead mark)");
my @ids = MsmTest::ids_in($log);
is_deeply(\@ids, [], 'no session id (32 hex digits) in the error_log (relocations are logged by tag)')
    or diag(join "\n", grep { my $l = $_; grep { index($l, $_) >= 0 } @ids } split /\n/, $log);

# ------------------------------------------------ SIGCONT: probed after MsmNodeRetry, used again
$mc{$X}->sigcont;
$mark = MsmTest::log_mark();
sleep $RETRY + 0.2;
$r = $reserved->{c}->get('/msm/app.cgi?op=read');
diag(sprintf 'after SIGCONT + %.1f s: read of a session on %s %.1f ms', $RETRY + 0.2, $X, $r->elapsed * 1000);
ok($r->status == 200 && (($r->session // {})->{data} // '') eq $reserved->{val},
   "after SIGCONT: the session left on $X reads with its content");
ok(!defined $r->cookie('MSMSESSION'), "after SIGCONT: it stays on $X (no new cookie: $X was probed and used)");
ok(MsmTest::wait_until(sub { MsmTest::node_states()->{$X} }, timeout => 3)
   && MsmTest::log_since($mark) =~ /MSM00103: memcached node $X /,
   "$X is live again (msm-status) and MSM00103 was logged");
my $landed;
for my $i (1 .. 40) {
    my $c = MsmTest::client();
    my $rr = $c->get("/msm/app.cgi?op=set&k=data&v=new$i");
    my ($h, $n) = ($rr->cookie('MSMSESSION') // '') =~ $ID;
    if ($n && $n eq $X) { $landed = "$h-$n"; last }
}
ok($landed && primary_on($X, $landed) eq $X, "new sessions are placed on $X again (" . ($landed // 'none') . ')');
