# Session locking: an httpd child killed (SIGKILL) while it holds a session's
# lock leaves the lock behind for MsmLockExpire to MsmLockExpire + 1 seconds; the next
# request of that session waits for it to expire and then gets the lock (200,
# not 503, not never), and the session is intact.
# An extra httpd (port 21341): MsmLocking On, MsmLockTimeout 4000, MsmLockExpire 2,
# on the same memcached nodes n1-n3 as the Apache::Test server. The lock is
# lock:t:<hex> on the session's node; the session the copy "MSM1 S ...\n<value>"
# under t:<hex>.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Time::HiRes qw(time sleep);

plan tests => 21, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my %port = (n1 => 21301, n2 => 21302, n3 => 21303);
my %mc = map { $_ => MsmTest::memcached(port => $port{$_}) } sort keys %port;

my $h = MsmTest::httpd(port => 21341, name => 'lockcrash', servers => 3, conf => <<'EOF');
MsmNodes n1:127.0.0.1:21301 n2:127.0.0.1:21302 n3:127.0.0.1:21303
MsmKeyPrefix t:
MsmOperationTimeout 500
MsmNodeRetry 1
MsmLockExpire 2
<Location /msm/>
    @APP_SESSION@
    MsmLocking On
    MsmLockTimeout 4000
    MsmLockFail Error
</Location>
EOF
ok($h->running, 'extra httpd (MsmLockExpire 2, MsmLockTimeout 4000) started on ' . $h->url);

my $c = MsmTest::client(base => $h->url);
my $r;
ok(MsmTest::wait_until(sub {
    $c->clear_cookies;
    $r = $c->get('/msm/app.cgi?op=set&k=keep&v=yes');
    return $r->status == 200 && ($c->cookie('MSMSESSION') // '') =~ /^[0-9a-f]{32}-n[123]$/;
}, timeout => 10, interval => 0.3), 'session created') or diag($r->dump);
my $sid = $c->cookie('MSMSESSION') // '';
my ($node) = $sid =~ /-(n[123])$/;
$node //= 'n1';
my $mcn = $mc{$node};
my $lk = MsmTest::lock_key($sid);
my @v = map { $c->get('/msm/app.cgi?op=incr&k=c')->field('value') // 'none' } 1 .. 3;
is_deeply(\@v, [1, 2, 3], 'three locked increments: c=3');
ok(!grep({ $_ eq $lk } $mcn->keys), 'no lock key between requests');

sub app_pids_under {     # app.cgi processes below an httpd child
    my $kid = shift;
    return grep { MsmTest::_cmdline($_) =~ /app\.cgi/ } MsmTest::descendant_pids($kid);
}

# A: holds the lock for 10 s (the app sleeps before writing), in a worker;
# the test finds the httpd child serving it and kills it with SIGKILL
my ($ra, $rk) = MsmTest::parallel(2, sub {
    my $i = shift;
    if ($i == 0) {
        my $w = MsmTest::client(base => $h->url, timeout => 20);
        $w->cookie(MSMSESSION => $sid);
        my $x = $w->get('/msm/app.cgi?op=incr&k=c&sleep_ms=10000');
        return { status => $x->status, elapsed => $x->elapsed };
    }
    my %o;
    # the lock appears when A has passed the header_parser hook
    $o{lock_seen} = MsmTest::wait_until(sub { defined $mcn->get($lk) ? time : 0 },
                                        timeout => 5, interval => 0.01);
    $o{token} = $mcn->get($lk);
    # A's httpd child: the one running an app.cgi (the only request in flight)
    my ($kid, @cgi);
    MsmTest::wait_until(sub {
        for my $k ($h->children) {
            my @a = app_pids_under($k);
            if (@a) { ($kid, @cgi) = ($k, @a); return 1 }
        }
        return 0;
    }, timeout => 5, interval => 0.02);
    return \%o unless $kid;
    $o{kid} = $kid;
    kill 'KILL', $kid;                  # the crash; then the orphaned app, by its pid
    MsmTest::wait_until(sub { !kill(0, $kid) || MsmTest::_cmdline($kid) eq '' }, timeout => 3);
    kill 'KILL', @cgi;
    $o{killed} = time;
    $o{lock_after_kill} = $mcn->get($lk);
    $o{ttl_after_kill} = $mcn->ttl($lk);
    $o{stored_after_kill} = ($mcn->copy($sid) || {})->{payload};
    # B: the next request of the session
    my $w = MsmTest::client(base => $h->url, timeout => 15);
    $w->cookie(MSMSESSION => $sid);
    $o{b_sent} = time;
    my $x = $w->get('/msm/app.cgi?op=incr&k=c');
    $o{b_done} = time;
    @o{qw(b_status b_value b_elapsed b_pid)} = ($x->status, $x->field('value'), $x->elapsed, $x->pid);
    $o{b_session} = $x->session;
    $o{b_retry_after} = $x->header('Retry-After');
    return \%o;
}, timeout => 40);

diag(sprintf 'lock seen at +0, A\'s child %s killed at +%.2f s (lock ttl then %s s); B sent at +%.2f s, answered %s at +%.2f s (waited %.2f s)',
     $rk->{kid} // 'none', ($rk->{killed} // 0) - ($rk->{lock_seen} // 0), $rk->{ttl_after_kill} // 'none',
     ($rk->{b_sent} // 0) - ($rk->{lock_seen} // 0), $rk->{b_status} // 'none',
     ($rk->{b_done} // 0) - ($rk->{lock_seen} // 0), $rk->{b_elapsed} // 0)
    if $rk && $rk->{lock_seen};
ok($rk->{lock_seen}, 'A took the lock (lock key present while it runs)') or diag(explain $rk);
like($rk->{token} // '', qr/^[0-9a-f]{16}\.\d+$/, 'the lock value is a token "<64 random bits hex>.<pid>"');
ok($rk->{kid}, "found A's httpd child (parent of the running app.cgi): " . ($rk->{kid} // 'none'));
like($rk->{token} // '', qr/\.\Q@{[ $rk->{kid} \/\/ 'x' ]}\E$/, "the token names A's child pid");
isnt($ra->{status}, 200, 'A never answered 200 (its child was killed): ' . ($ra->{status} // 'none'));
is($rk->{lock_after_kill}, $rk->{token}, 'the crash left the lock behind in memcached');
like($rk->{stored_after_kill} // '', qr/(?:^|&)c=3(?:&|$)/, 'the killed request wrote nothing: c=3 stored');
is($rk->{b_status}, 200, 'B, the next request of the session, answers 200 (not 503)');
# memcached's clock has 1 s steps: mod_msm adds the lock with exptime MsmLockExpire + 1
# (3), which lives between 2 and 3 s: never less than MsmLockExpire
ok(defined $rk->{b_done} && $rk->{b_done} - $rk->{lock_seen} >= 1.95,
   sprintf('B got the lock only once the dead lock expired (answered %.2f s after it was taken, >= MsmLockExpire)',
           ($rk->{b_done} // 0) - ($rk->{lock_seen} // 0)));
ok(defined $rk->{b_done} && $rk->{b_done} - $rk->{lock_seen} <= 4.0,
   sprintf('B answered within 4 s of the lock being taken (%.2f s; MsmLockExpire 2 + 1 s + back-off)',
           ($rk->{b_done} // 99) - ($rk->{lock_seen} // 0)));
is($rk->{b_value}, 4, 'B continues the counter: c=4 (session intact)');
is_deeply($rk->{b_session}, { keep => 'yes', c => 4 }, 'B sees the whole session');
isnt($rk->{b_pid}, $rk->{kid}, 'B was served by another (live) child');
ok(!grep({ $_ eq $lk } $mcn->keys), 'B released its lock');
my $cr = MsmTest::client(base => $h->url);
$cr->cookie(MSMSESSION => $sid);
is_deeply($cr->get('/msm/app.cgi?op=read')->session, { keep => 'yes', c => 4 }, 'a later read: keep=yes, c=4');
ok($rk->{kid} && (!kill(0, $rk->{kid}) || MsmTest::_cmdline($rk->{kid}) eq "") && $h->running, "A's child is gone, the httpd parent still runs");
$h->stop;
ok(!MsmTest::port_open(21341), 'extra httpd stopped');
