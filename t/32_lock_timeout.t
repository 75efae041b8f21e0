# Session locking: a lock that another party holds (set directly in memcached)
# is waited for MsmLockTimeout, then
#   /lock-on/      (MsmLockTimeout 1000, MsmLockFail Error)   -> 503 + Retry-After
#   /lock-proceed/ (MsmLockTimeout 500,  MsmLockFail Proceed) -> 200, the request
#                  runs unlocked and writes; MSM00141 is logged
# and neither request ever deletes (or rewrites) the foreign lock. The lock is
# lock:t:<hex>, the session the copy "MSM1 S ...\n<value>" under t:<hex>; the log
# lines name the session by its tag, never by its id.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use List::Util qw(min max);
use Time::HiRes qw(time sleep);

plan tests => 25, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my %port = (n1 => 21301, n2 => 21302, n3 => 21303);
my %mc = map { $_ => MsmTest::memcached(port => $port{$_}) } sort keys %port;
sleep 1.2;    # dead marks of an earlier test file (MsmNodeRetry 1) expire

my $c = MsmTest::client();
my $r;
ok(MsmTest::wait_until(sub {
    $c->clear_cookies;
    $r = $c->get('/msm/app.cgi?op=set&k=c&v=10');
    return $r->status == 200 && ($c->cookie('MSMSESSION') // '') =~ /^[0-9a-f]{32}-n[123]$/;
}, timeout => 10, interval => 0.3), 'session created (c=10)') or diag($r->dump);
my $sid = $c->cookie('MSMSESSION') // '';
my ($node) = $sid =~ /-(n[123])$/;
$node //= 'n1';
my $mcn = $mc{$node};
my $lk = MsmTest::lock_key($sid);
my $tag = MsmTest::session_tag($sid) // 'none';

sub stored_c {
    my $v = ($mcn->copy($sid) || {})->{payload} // '';
    return $v =~ /(?:^|&)c=(\d+)/ ? $1 : undef;
}

# uncontended times of the same requests (CGI start-up included), to compare with
my (@base_on, @base_proceed);
for (1 .. 3) {
    my $b = $c->get('/lock-on/app.cgi?op=read');
    push @base_on, $b->status == 200 ? $b->elapsed : 99;
    $b = $c->get('/lock-proceed/app.cgi?op=read');
    push @base_proceed, $b->status == 200 ? $b->elapsed : 99;
}
my ($base_on, $base_proceed) = (min(@base_on), min(@base_proceed));
diag(sprintf 'uncontended: /lock-on/ read %.0f ms, /lock-proceed/ read %.0f ms',
     $base_on * 1000, $base_proceed * 1000);
ok($base_on < 1 && $base_proceed < 1, 'uncontended locked reads answer 200 quickly');
ok(!grep({ $_ eq $lk } $mcn->keys), 'no lock key left by the uncontended requests');

# ---------------------------------------------------------------- the foreign lock
my ($add) = $mcn->raw("add $lk 0 30 5", 'other');
is($add, 'STORED', "external lock $lk = 'other' (exptime 30) added on $node");

# ---------------------------------------------------------------- MsmLockFail Error
my $mark = MsmTest::log_mark();
my (@el, @st, @ra);
for (1 .. 3) {
    my $x = $c->get('/lock-on/app.cgi?op=incr&k=c');
    push @el, $x->elapsed;
    push @st, $x->status;
    push @ra, $x->header('Retry-After') // 'none';
}
my $log = MsmTest::log_since($mark);
diag(sprintf '/lock-on/ (MsmLockTimeout 1000) against a held lock: %s ms (statuses %s)',
     join(', ', map { sprintf '%.0f', $_ * 1000 } @el), join(',', @st));
is_deeply(\@st, [503, 503, 503], '/lock-on/: 503 Service Unavailable, three times');
is_deeply(\@ra, [1, 1, 1], '/lock-on/: Retry-After: 1 on each 503');
ok(min(@el) >= 0.99, sprintf('/lock-on/: never answers before MsmLockTimeout (min %.0f ms >= 990)', min(@el) * 1000));
ok(min(@el) <= 1.1, sprintf('/lock-on/: answers 1000 +- 100 ms (best of 3: %.0f ms)', min(@el) * 1000));
ok(max(@el) <= 1.6, sprintf('/lock-on/: every attempt within 1600 ms on a loaded machine (max %.0f ms)', max(@el) * 1000));
my $n142 = () = $log =~ /MSM00142: session $tag stayed locked/g;
is($n142, 3, "MSM00142 (503) logged once per request, naming the session by its tag $tag") or diag($log);
my $all_log = $log;
like($mcn->get($lk) // '', qr/^other(?: |$)/, 'the external lock is still held by its owner after the 503s (waiters only append to it)');
is(stored_c(), 10, 'the 503 requests did not write (c is still 10)');

# ---------------------------------------------------------------- MsmLockFail Proceed
$mark = MsmTest::log_mark();
my (@pel, @pst, @pval);
for (1 .. 3) {
    my $x = $c->get('/lock-proceed/app.cgi?op=incr&k=c');
    push @pel, $x->elapsed;
    push @pst, $x->status;
    push @pval, $x->field('value') // 'none';
}
$log = MsmTest::log_since($mark);
my @extra = map { $_ - $base_proceed } @pel;
diag(sprintf '/lock-proceed/ (MsmLockTimeout 500) against a held lock: %s ms; minus the uncontended time: %s ms',
     join(', ', map { sprintf '%.0f', $_ * 1000 } @pel), join(', ', map { sprintf '%.0f', $_ * 1000 } @extra));
is_deeply(\@pst, [200, 200, 200], '/lock-proceed/: 200, three times');
is_deeply(\@pval, [11, 12, 13], '/lock-proceed/: the app ran with the session (11, 12, 13)');
ok(min(@pel) >= 0.5, sprintf('/lock-proceed/: waited MsmLockTimeout first (min %.0f ms >= 500)', min(@pel) * 1000));
ok(min(@extra) <= 0.6, sprintf('/lock-proceed/: ~500 ms more than uncontended (best of 3: %.0f ms <= 600)', min(@extra) * 1000));
ok(max(@pel) <= 1.5, sprintf('/lock-proceed/: every attempt within 1500 ms (max %.0f ms)', max(@pel) * 1000));
is(stored_c(), 13, 'the unlocked requests wrote the session (c=13 in memcached)');
my $n141 = () = $log =~ /MSM00141/g;
is($n141, 3, 'MSM00141 (proceeding without the lock) logged once per request') or diag($log);
like($log, qr/\[[^\]]*:warn\].*MSM00141: session $tag stayed locked/, 'MSM00141 is a warning, naming the tag');
$all_log .= $log;
my @ids = MsmTest::ids_in($all_log);
is_deeply(\@ids, [], 'no session id (32 hex digits) in the error_log (lock timeouts are logged by tag)')
    or diag(join "\n", grep { my $l = $_; grep { index($l, $_) >= 0 } @ids } split /\n/, $all_log);
like($mcn->get($lk) // '', qr/^other(?: |$)/, 'the external lock is still held by its owner after proceeding');
my $ttl = $mcn->ttl($lk);
ok(defined $ttl && $ttl > 20, 'the external lock kept its own expiry (ttl ' . ($ttl // 'none') . ' s, set 30)');

# ---------------------------------------------------------------- lock gone: normal again
ok($mcn->delete($lk), 'external lock removed by the test');
$r = $c->get('/lock-on/app.cgi?op=incr&k=c');
ok($r->status == 200 && ($r->field('value') // 0) == 14 && $r->elapsed < 1,
   sprintf('/lock-on/ locks normally again: 200, c=14, %.0f ms', $r->elapsed * 1000)) or diag($r->dump);
