# Session locking prevents lost updates: one session, 200 increments from 16
# parallel clients sharing its cookie (each with a copy of it; the app sleeps 2 ms
# between reading and writing to widen the race window).
#   /lock-default/ (MsmLocking On with the default MsmLockTimeout 3000, Error):
#             the counter ends at exactly 200 - #503, every answer is a distinct
#             value, and no request times out (#503 == 0): waiters are served
#             first come, first served, so none waits for more than ~15 turns;
#   /msm/     (no locking): the same run loses updates (< 200) - which shows
#             that the test can fail.
# The session is the copy "MSM1 S ...\n<value>" under t:<hex> on its node
# (MsmTest::parse_copy); log lines name it by its tag, never by its id.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Time::HiRes qw(time sleep);

plan tests => 14, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my %port = (n1 => 21301, n2 => 21302, n3 => 21303);
my %mc = map { $_ => MsmTest::memcached(port => $port{$_}) } sort keys %port;
sleep 1.2;    # dead marks of an earlier test file (MsmNodeRetry 1) expire

my $N = 200;
my $P = 16;

sub new_session {
    my $c = MsmTest::client();
    my $r;
    MsmTest::wait_until(sub {
        $c->clear_cookies;
        $r = $c->get('/msm/app.cgi?op=set&k=x&v=1');
        return $r->status == 200 && ($c->cookie('MSMSESSION') // '') =~ /^[0-9a-f]{32}-n[123]$/;
    }, timeout => 10, interval => 0.3);
    return $c->cookie('MSMSESSION');
}

sub stored_c {
    my $sid = shift;
    my ($node) = $sid =~ /-(n[123])$/;
    my $v = ($mc{$node // 'n1'}->copy($sid) || {})->{payload} // '';
    return $v =~ /(?:^|&)c=(\d+)/ ? $1 + 0 : 0;
}

# $N requests "$prefix/app.cgi?op=incr&k=c&sleep_ms=$ms" from $P clients, each
# with its own copy of the cookie; bounded (40 s per worker)
sub run {
    my ($sid, $prefix, $ms) = @_;
    my $t0 = time;
    my @res = MsmTest::parallel($P, sub {
        my $i = shift;
        my $w = MsmTest::client();
        my (%st, @vals, @el);
        my $deadline = time + 40;
        for (my $j = $i; $j < $N; $j += $P) {
            last if time > $deadline;
            $w->cookie(MSMSESSION => $sid);      # a 503 must not cost the cookie
            my $x = $w->get("$prefix/app.cgi?op=incr&k=c&sleep_ms=$ms");
            $st{ $x->status }++;
            push @el, $x->elapsed;
            push @vals, $x->field('value') if $x->status == 200;
        }
        return { st => \%st, vals => \@vals, el => \@el };
    }, timeout => 60);
    my $elapsed = time - $t0;
    my (%st, @vals, @el, $err);
    for my $x (@res) {
        if ($x->{__error}) { $err .= $x->{__error}; next }
        $st{$_} += $x->{st}{$_} for keys %{ $x->{st} };
        push @vals, @{ $x->{vals} };
        push @el, @{ $x->{el} };
    }
    my $n = 0;
    $n += $_ for values %st;
    @el = sort { $a <=> $b } @el;
    return {
        st => \%st, n => $n, vals => [sort { $a <=> $b } grep { defined } @vals],
        elapsed => $elapsed, rps => $n / ($elapsed || 1), err => $err,
        p50 => @el ? $el[int(@el * 0.5)] : 0, p90 => @el ? $el[int(@el * 0.9)] : 0,
        max => @el ? $el[-1] : 0,
        final => stored_c($sid),
    };
}
sub summary {
    my ($name, $r) = @_;
    return sprintf '%-22s %3d requests in %5.2f s = %6.1f rps; latency p50 %4.0f ms p90 %4.0f ms max %5.0f ms; statuses %s; final counter %d',
        $name, $r->{n}, $r->{elapsed}, $r->{rps}, $r->{p50} * 1000, $r->{p90} * 1000, $r->{max} * 1000,
        join(',', map { "$_:$r->{st}{$_}" } sort keys %{ $r->{st} }), $r->{final};
}

# ---------------------------------------------------------------- locked
my $sid = new_session();
like($sid // '', qr/^[0-9a-f]{32}-n[123]$/, 'session for the locked run');
my $mark = MsmTest::log_mark();
my $on = run($sid, '/lock-default', 2);
my $log = MsmTest::log_since($mark);
diag(summary('On  (/lock-default/)', $on));
ok(!$on->{err}, 'locked run: every worker reported') or diag($on->{err});
is($on->{n}, $N, "locked run: $N requests answered");
my $n503 = $on->{st}{503} // 0;
is(($on->{st}{200} // 0) + $n503, $N, 'locked run: every answer is 200 or 503 (lock timeout)')
    or diag(explain $on->{st});
is($on->{final}, $N - $n503, "locked run: final counter == $N - #503 (no lost update; #503 = $n503)");
is_deeply($on->{vals}, [1 .. $on->{final}], 'locked run: the 200 answers carry the distinct values 1..final');
is($n503, 0, 'locked run: no request timed out (MsmLockTimeout 3000 ms for 16 clients)')
    or diag('MSM00142 lines: ' . scalar(() = $log =~ /MSM00142/g) . sprintf(
        '; latency of all answers: p50 %.0f ms, p90 %.0f ms - a fair queue of 16 waits at most ~15 x p50',
        $on->{p50} * 1000, $on->{p90} * 1000));
is(scalar(() = $log =~ /MSM00140/g), 0, 'locked run: no lock expired before its release (MSM00140)');
ok(!grep({ /^lock:/ } map { $mc{$_}->keys } keys %mc), 'locked run: no lock key left');
my @ids = MsmTest::ids_in($log);
is_deeply(\@ids, [], 'locked run: no session id (32 hex digits) in the error_log (lock lines carry tags)')
    or diag(join "\n", grep { my $l = $_; grep { index($l, $_) >= 0 } @ids } split /\n/, $log);

# ---------------------------------------------------------------- unlocked
my ($off, $tries, $sid2);
for my $ms (2, 10, 30) {          # bounded: at most 3 runs, a wider window each time
    $tries++;
    $sid2 = new_session();
    $off = run($sid2, '/msm', $ms);
    diag(summary("Off (/msm/) sleep ${ms}ms", $off));
    last if $off->{final} < $N;
}
like($sid2 // '', qr/^[0-9a-f]{32}-n[123]$/, 'session for the unlocked run');
is($off->{st}{200} // 0, $N, "unlocked run: all $N answered 200");
ok($off->{final} < $N, "unlocked run loses updates: final counter $off->{final} < $N (after $tries run(s))");
ok($off->{final} >= 1, 'unlocked run: the counter did move');
diag(sprintf 'On vs Off: %.1f vs %.1f rps; lost updates without the lock: %d of %d',
     $on->{rps}, $off->{rps}, $N - $off->{final}, $N);
