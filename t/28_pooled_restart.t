# A memcached restart leaves every idle pooled connection to it dead. An
# event child (16 threads) keeps up to one idle connection per thread: the
# first operation after the restart meets one, retries on a new connection,
# and the node is NOT marked down; nor is it when the other threads come back
# to the pool. Found by t/90_lifecycle.t: a retry took the next pooled (as
# dead) connection, so each of an event child's 1-s probes failed in turn
# and a restarted node stayed "down" for 4 s, while another server wrote
# sessions there that this one then could not find.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Time::HiRes qw(time sleep);

plan tests => 8, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my $mc = MsmTest::memcached(port => 21335);
my $h = MsmTest::httpd(port => 21334, name => 'pooled', mpm => 'event', servers => 1, threads => 16,
                       conf => <<'EOF');
MsmNodes n1:127.0.0.1:21335
MsmKeyPrefix t:
MsmOperationTimeout 500
MsmNodeRetry 1
<Location /msm/>
    @APP_SESSION@
</Location>
EOF

my $c = MsmTest::client(base => $h->url);
my $r = $c->get('/msm/app.cgi?op=set&k=v&v=kept');
my $ck = $c->cookie('MSMSESSION') // '';
like($ck, qr/^[0-9a-f]{32}-n1$/, 'a session on n1');

# 8 parallel clients, 15 reads each of the session $cookie, which holds v=$v:
# the child's threads each pool a connection; how many reads found it
sub load {
    my ($cookie, $v) = @_;
    my @res = MsmTest::parallel(8, sub {
        my $w = MsmTest::client(base => $h->url);
        $w->cookie(MSMSESSION => $cookie);
        my $ok = 0;
        for (1 .. 15) {
            my $x = $w->get('/msm/app.cgi?op=read');
            $ok++ if (($x->session // {})->{v} // '') eq $v;
        }
        return $ok;
    }, timeout => 60);
    my $ok = 0;
    $ok += ref $_ ? 0 : $_ // 0 for @res;
    return $ok;
}
is(load($ck, 'kept'), 120, '120 parallel reads find the session (the child pools its connections)');
my $curr = $mc->stats->{curr_connections} // 0;
diag("memcached curr_connections after the load: $curr");
cmp_ok($curr, '>=', 4, 'several pooled connections to n1');

my $mark = MsmTest::log_mark($h->error_log);
$mc->restart;                        # kill, same port, empty
ok(MsmTest::port_open(21335, 1), 'n1 restarted (empty)');
$c->get('/msm/app.cgi?op=set&k=v&v=again');    # one request: a new session
my $ck2 = $c->cookie('MSMSESSION') // '';
like($ck2, qr/^[0-9a-f]{32}-n1$/, 'the first request after the restart writes a new session on n1');
is(load($ck2, 'again'), 120, '120 parallel reads of it: every thread meets its dead pooled connection, all find the session');
my $log = MsmTest::log_since($mark);
unlike($log, qr/MSM0010[125]/, 'n1 was never marked down (no MSM00101/102/105)')
    or diag(join "\n", grep { /MSM0010/ } split /\n/, $log);
cmp_ok($mc->stats->{curr_connections} // 0, '>=', 4, 'the pool is rebuilt');

$h->stop;
$mc->stop;
