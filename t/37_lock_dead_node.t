# MsmLocking On when the session's node is gone (README "Locking": the lock lives
# on the node of the session's primary copy; "when the load finds the primary
# copy on another node (..., a node that died meanwhile), the lock moves there
# and the session is read again"; G4: "a request arriving meanwhile moves the
# session and locks it on its new node"; no 500). An extra httpd on memcached d1,
# d2 with /le/ (MsmLockFail Error) and /lp/ (MsmLockFail Proceed), MsmLockTimeout
# 1000, MsmOperationTimeout 500:
#   - d1 killed (-9): an increment of a session on d1 answers 200 at once with
#     the backup's value + 1 and moves the session to d2 (cookie); 4 parallel
#     increments through the new cookie then give exactly 4 (locked on d2);
#   - d1 hanging (SIGSTOP): the same, within one operation timeout + slack.
# Both for Error and Proceed; never a 500 or 503; no lock key left.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Time::HiRes qw(time sleep);

plan tests => 26, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my %mc = (d1 => MsmTest::memcached(port => 21435), d2 => MsmTest::memcached(port => 21436));
my $h = MsmTest::httpd(port => 21437, name => 't37', servers => 4, conf => MsmTest::app_conf(
    'd1:127.0.0.1:21435 d2:127.0.0.1:21436', 'd37:', 'MsmLockExpire 5', <<"EOF"));
Alias /le/ "\@T\@/htdocs/msm/"
Alias /lp/ "\@T\@/htdocs/msm/"
<Location /le/>
    \@APP_SESSION\@
    MsmLocking On
    MsmLockTimeout 1000
    MsmLockFail Error
</Location>
<Location /lp/>
    \@APP_SESSION\@
    MsmLocking On
    MsmLockTimeout 1000
    MsmLockFail Proceed
</Location>
EOF
my $base = $h->url;
# A request that finds its node dead (connection refused) pays no timeout: a CGI
# run and a few memcached round trips (20-100 ms; 1 s on a busy 2-core machine
# is far). A hanging node costs one MsmOperationTimeout (500 ms) for the first
# operation that meets it, then the node is skipped: 500 ms + 1 s of slack.
my %BOUND = (kill9 => 1.0, sigstop => 1.5);

# a session on d1 made through $loc, n=10, with its backup on d2: (client, cookie)
sub locked_session_on_d1 {
    my $loc = shift;
    my ($c, $sid);
    for (1 .. 40) {
        $c = MsmTest::client(base => $base, timeout => 20);
        $c->get("/$loc/app.cgi?op=set&k=n&v=10");
        $sid = $c->cookie('MSMSESSION') // '';
        last if (MsmTest::cookie_node($sid) // '') eq 'd1';
    }
    MsmTest::wait_until(sub { (($mc{d2}->copy($sid, 'd37:') || {})->{primary} // '') eq 'd1' }, timeout => 5);
    return ($c, $sid);
}

for my $fault (qw(kill9 sigstop)) {
    for my $loc (qw(le lp)) {
        my $name = "$fault, /$loc/";
        ok(MsmTest::wait_nodes_live([qw(d1 d2)], base => $base, app => "/$loc/app.cgi"), "$name: d1, d2 live");
        my ($c, $sid) = locked_session_on_d1($loc);
        my $hex = MsmTest::cookie_hex($sid) // 'none';
        my $mark = MsmTest::log_mark($h->error_log);
        if ($fault eq 'kill9') { $mc{d1}->kill9 } else { $mc{d1}->sigstop->wait_stopped }
        my $r = $c->get("/$loc/app.cgi?op=incr&k=n");
        diag(sprintf '%s: %d in %.0f ms, Set-Cookie %s', $name, $r->status, $r->elapsed * 1000,
             join(' ', $r->set_cookies) || '-');
        is($r->status, 200, "$name: the increment answers 200 (no 500, no 503)");
        cmp_ok($r->elapsed, '<', $BOUND{$fault}, "$name: ... within $BOUND{$fault} s");
        ok(($r->field('value') // 0) == 11 && ($c->cookie('MSMSESSION') // '') eq "$hex-d2",
           "$name: it read the backup (n=10 -> 11) and moved the session to d2 (same hex)");
        # the lock now lives on d2: parallel increments through the new cookie
        my ($ok, $n, $st) = MsmTest::parallel_incr_at($base, "/$loc", $c->cookie('MSMSESSION'), 4);
        is("$ok $n", '4 15', "$name: 4 parallel increments on the moved session: 4 answers 200, n = 15 ($st)");
        my $log = MsmTest::log_since($mark);
        unlike($log, qr/exit signal|Segmentation|MSM00140/, "$name: no crash, no lock lost");
        if ($fault eq 'kill9') { $mc{d1}->restart } else { $mc{d1}->sigcont }
    }
}
# no lock left on d2, where the sessions and their locks moved. d1 may hold a
# lock: the add that met the stopped d1 sat in its socket and ran when d1
# resumed (mod_msm had given up on it); it expires within MsmLockExpire + 1 s
# (exptime 6: memcached's clock ticks once a second)
my @d1_locks = grep { /^lock:/ } $mc{d1}->keys;
my @ttl = map { $mc{d1}->ttl($_) // 0 } @d1_locks;
ok(!grep({ /^lock:/ } $mc{d2}->keys) && !grep({ $_ < 0 || $_ > 6 } @ttl),
   'no lock key left on d2; on d1 only locks that expire within MsmLockExpire + 1 s (TTLs: ' . join(' ', @ttl) . ')');
ok(!grep({ /" 5\d\d / } do { open my $fh, '<', $h->dir . '/logs/access_log'; <$fh> }), 'no 5xx in the access log');
