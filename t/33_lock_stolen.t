# Session locking: a request that outlives its lock must not release the lock
# of the request that took the session over.
#   A (incr, the app sleeps 3500 ms) takes the lock on an httpd with
#     MsmLockExpire 1: its lock expires while it runs;
#   B (incr, sleeps 2000 ms), sent ~2.3 s after A took the lock, gets it;
#   A ends (and "releases") while B runs: B's lock must stay in memcached with
#     B's token, unchanged, until B releases it; A logs MSM00140.
# B is served by a second httpd on the same memcached nodes with MsmLockExpire
# 10: memcached's clock has 1 s steps, so A's lock (exptime MsmLockExpire + 1
# = 2) lives between 1 and 2 s - with MsmLockExpire 1, B's own lock could
# expire before A ends, which would prove nothing. Both: MsmLocking On, MsmLockTimeout 5000. The lock is
# lock:t:<hex> on the session's node; log lines name the session by its tag.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Time::HiRes qw(time sleep);

plan tests => 18, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my %port = (n1 => 21301, n2 => 21302, n3 => 21303);
my %mc = map { $_ => MsmTest::memcached(port => $port{$_}) } sort keys %port;

my $conf = <<'EOF';
MsmNodes n1:127.0.0.1:21301 n2:127.0.0.1:21302 n3:127.0.0.1:21303
MsmKeyPrefix t:
MsmOperationTimeout 500
MsmNodeRetry 1
MsmLockExpire @EXPIRE@
<Location /msm/>
    @APP_SESSION@
    MsmLocking On
    MsmLockTimeout 5000
    MsmLockFail Error
</Location>
EOF
(my $conf_a = $conf) =~ s/\@EXPIRE\@/1/;
(my $conf_b = $conf) =~ s/\@EXPIRE\@/10/;
my $ha = MsmTest::httpd(port => 21342, name => 'lockstolen-a', servers => 2, conf => $conf_a);
my $hb = MsmTest::httpd(port => 21343, name => 'lockstolen-b', servers => 2, conf => $conf_b);
ok($ha->running && $hb->running, 'httpd A (MsmLockExpire 1) and B (MsmLockExpire 10) started');

my $c = MsmTest::client(base => $ha->url);
my $r;
ok(MsmTest::wait_until(sub {
    $c->clear_cookies;
    $r = $c->get('/msm/app.cgi?op=set&k=c&v=0');
    return $r->status == 200 && ($c->cookie('MSMSESSION') // '') =~ /^[0-9a-f]{32}-n[123]$/;
}, timeout => 10, interval => 0.3), 'session created (c=0)') or diag($r->dump);
my $sid = $c->cookie('MSMSESSION') // '';
my ($node) = $sid =~ /-(n[123])$/;
$node //= 'n1';
my $mcn = $mc{$node};
my $lk = MsmTest::lock_key($sid);

my $mark_a = MsmTest::log_mark($ha->error_log);
my $mark_b = MsmTest::log_mark($hb->error_log);

sub req {
    my ($h, $ms) = @_;
    my $w = MsmTest::client(base => $h->url, timeout => 20);
    $w->cookie(MSMSESSION => $sid);
    my $t0 = time;
    my $x = $w->get("/msm/app.cgi?op=incr&k=c&sleep_ms=$ms");
    return { status => $x->status, value => $x->field('value'), pid => $x->pid,
             start => $t0, end => time, body => $x->status == 200 ? '' : $x->dump };
}

my ($a, $b, $obs) = MsmTest::parallel(3, sub {
    my $i = shift;
    return req($ha, 3500) if $i == 0;
    if ($i == 1) {
        # B: once A holds the lock, ~2.3 s later (A's lock, 1-2 s, has expired by then)
        my $seen = MsmTest::wait_until(sub { defined $mcn->get($lk) ? time : 0 },
                                       timeout => 5, interval => 0.01)
            or return { error => 'A never took the lock' };
        my $gone = MsmTest::wait_until(sub { defined $mcn->get($lk) ? 0 : time },
                                       timeout => 3, interval => 0.01);
        my $wait = $seen + 2.3 - time;
        sleep $wait if $wait > 0;
        my $res = req($hb, 2000);
        $res->{a_lock_seen} = $seen;
        $res->{a_lock_gone} = $gone;
        return $res;
    }
    # observer: the lock key's value every 10 ms for at most 7 s, as transitions
    my @tr;
    my $last = '';
    my $t0 = time;
    my $n = 0;
    while (time - $t0 < 7 && $n++ < 2000) {
        my $v = eval { $mcn->get($lk) } // '-';
        if ($v ne $last) { push @tr, [time, $v]; $last = $v }
        # done once two tokens came and went (A's, then B's)
        last if $v eq '-' && 2 <= grep { $_->[1] ne '-' } @tr;
        sleep 0.01;
    }
    return \@tr;
}, timeout => 30);

my $log_a = MsmTest::log_since($mark_a);
my $log_b = MsmTest::log_since($mark_b);
my $T = $b->{a_lock_seen} // $a->{start} // time;
diag(sprintf 'A: %s at +%.2f s (pid %s); B: sent at +%.2f s, %s at +%.2f s (pid %s); A\'s lock gone at +%.2f s',
     $a->{status} // 'none', ($a->{end} // 0) - $T, $a->{pid} // 'none',
     ($b->{start} // 0) - $T, $b->{status} // 'none', ($b->{end} // 0) - $T, $b->{pid} // 'none',
     ($b->{a_lock_gone} // 0) - $T);
diag('lock key value over time: ' . join(', ', map { sprintf '+%.2f %s', $_->[0] - $T, $_->[1] } @{ $obs || [] }));

is($a->{status}, 200, 'A answered 200') or diag($a->{body});
is($b->{status}, 200, 'B answered 200') or diag($b->{body} // $b->{error});
ok($b->{a_lock_gone} && $b->{a_lock_gone} < $b->{start},
   "A's lock expired (MsmLockExpire 1) before B was sent");
ok($b->{start} < $a->{end} && $a->{end} < $b->{end}, 'A ended while B was running');

my @tr = @{ $obs || [] };
my ($ta) = grep { $_->[1] =~ /\.\Q$a->{pid}\E$/ } @tr;
ok($ta, "A's lock (token ending in A's pid $a->{pid}) was seen");
my @btr = grep { $_->[1] =~ /\.\Q$b->{pid}\E$/ } @tr;
is(scalar(@btr), 1, "B's lock (token ending in B's pid $b->{pid}) appeared once");
my $tb = $btr[0] // [0, 'none'];
like($tb->[1], qr/^[0-9a-f]{16}\.\d+$/, "B's token: $tb->[1]");
isnt($tb->[1], $ta ? $ta->[1] : '', "B's token differs from A's");
# the transition after B's token appeared: when the value changed next
my ($next) = grep { $_->[0] > $tb->[0] } @tr;
ok($tb->[0] && $tb->[0] < $a->{end}, sprintf("B's lock was there before A ended (+%.2f s < +%.2f s)",
                                             $tb->[0] - $T, $a->{end} - $T));
ok($next && $next->[0] > $a->{end} + 0.05,
   sprintf("B's lock stayed unchanged until after A ended (next change at +%.2f s, A ended at +%.2f s)",
           ($next ? $next->[0] : 0) - $T, $a->{end} - $T));
ok($next && $next->[1] eq '-' && $next->[0] >= $b->{end} - 0.5,
   sprintf("B's lock went away only when B released it (at +%.2f s, B answered at +%.2f s)",
           ($next ? $next->[0] : 0) - $T, $b->{end} - $T));
ok(!grep({ $_ eq $lk } $mcn->keys), 'no lock key left');

my $tag = MsmTest::session_tag($sid) // 'none';
like($log_a, qr/MSM00140: session lock of $tag expired/,
     "MSM00140 (lock expired before release) logged by A's httpd, naming the tag $tag") or diag($log_a);
my @ids = MsmTest::ids_in($log_a . $log_b);
is_deeply(\@ids, [], 'no session id (32 hex digits) in either error_log')
    or diag(join "\n", grep { my $l = $_; grep { index($l, $_) >= 0 } @ids } split /\n/, $log_a . $log_b);
unlike($log_b, qr/MSM0014[012]/, 'B\'s httpd: no MSM00140-00142 (B kept its lock)') or diag($log_b);
diag(sprintf 'values: A wrote %s, B wrote %s (A outlived its lock: the lock can not protect it)',
     $a->{value} // 'none', $b->{value} // 'none');

$ha->stop;
$hb->stop;
ok(!MsmTest::port_open(21342) && !MsmTest::port_open(21343), 'extra httpds stopped');
