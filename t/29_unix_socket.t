# Unix-domain socket nodes (README, MsmNodes "id:unix:/path"): a memcached on
# the same machine, reached without TCP. One node u1 on a socket (memcached -s,
# no TCP port at all) and one node t2 on TCP 21337, so that a session on u1 has
# its backup on t2 and the other way round. Through an extra httpd (21336,
# MsmLocking On): status shows the transport, CRUD and locking over the socket,
# kill -9 of u1 (the backup on t2 serves, the cookie moves), u1 restarted empty
# and back (MSM00101/MSM00103 name "unix:<path>"), logout, a session on t2
# whose backup is on u1, kill -9 of u1 while 4 clients read 12 sessions (none
# lost). Then sticky mode with both nodes on sockets (httpd 21338, u3 and u4):
# reads served from the local tier, copies in the socket memcached, a write
# after u3 was killed.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use File::Spec::Functions qw(catfile);
use Time::HiRes qw(time sleep);

plan tests => 16, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my $sock = catfile(MsmTest::tmp_dir(), "29-u1-$$.sock");
my $u1 = MsmTest::memcached(socket => $sock);
my $t2 = MsmTest::memcached(port => 21337);
my $h = MsmTest::httpd(port => 21336, name => 'unix', servers => 3,
                       conf => MsmTest::app_conf("u1:unix:$sock t2:127.0.0.1:21337", 't:', 'MsmLocking On'));
my $url = $h->url;

sub node_of { MsmTest::cookie_node(@_) // '' }
sub hex_of  { MsmTest::cookie_hex(@_) // '' }
sub data_of { my $r = shift; return (($r->session // {})->{data}) }
sub session_on { MsmTest::session_on($url, @_) }

ok(MsmTest::wait_nodes_live([qw(u1 t2)], base => $url),
   "httpd (21336) with u1 on $sock and t2 on 21337 up, both live");

my $sc = MsmTest::client(base => $url);
my $j = $sc->get('/msm-status')->json // {};
my %node = map { $_->{id} => $_ } @{ $j->{nodes} || [] };
ok(($node{u1}{address} // '') eq "unix:$sock" && ($node{u1}{transport} // '') eq 'unix'
   && ($node{t2}{address} // '') eq '127.0.0.1:21337' && ($node{t2}{transport} // '') eq 'tcp',
   'status JSON: u1 address unix:<path>, transport unix; t2 127.0.0.1:21337, tcp')
    or diag(explain(\%node));
my $prom = $sc->get('/msm-status?format=prometheus')->body // '';
like($prom, qr/^msm_node_up\{list="\d+",node="u1",address="unix:\Q$sock\E",transport="unix",tls="off"\} 1$/m,
     'Prometheus: msm_node_up of u1 with transport="unix"');

# ---- a session whose primary is u1 (backup on t2)
my ($c, $sid) = session_on('u1', 'over-the-socket');
my $hex = hex_of($sid);
ok(node_of($sid) eq 'u1' && $u1->holds($hex)
   && MsmTest::wait_until(sub { $t2->holds($hex) }, timeout => 5),
   'a session on u1 (its copy in the socket memcached), backup on t2');
my $r = $c->get('/msm/app.cgi?op=read');
is(data_of($r), 'over-the-socket', 'read back over the socket');

# ---- locking over the socket: 8 parallel increments of one session
my ($n200, $count, $why) = MsmTest::parallel_incr($url, $sid, 8);
ok($n200 == 8 && $count == 8,
   '8 parallel increments with MsmLocking On: n = 8 (lock taken and released over the socket)')
    or diag($why);

# ---- kill -9 u1: the backup on t2 serves, the cookie moves to t2
my $mark = MsmTest::log_mark($h->error_log);
$u1->kill9;
$r = $c->get('/msm/app.cgi?op=read');
my $moved = $c->cookie('MSMSESSION') // '';
ok($r->status == 200 && data_of($r) eq 'over-the-socket' && (($r->session // {})->{n} // 0) == 8
   && node_of($moved) eq 't2' && hex_of($moved) eq $hex,
   'u1 killed (-9): the read is served from the backup on t2, the cookie moves to t2')
    or diag($r->dump);
like(MsmTest::log_since($mark), qr/MSM00101: memcached node u1 \(unix:\Q$sock\E\) is down/,
     'MSM00101 names u1 and its socket');

# ---- u1 restarted (empty, same socket) and back
$u1->restart;
ok(MsmTest::wait_nodes_live(['u1'], base => $url, timeout => 10)
   && MsmTest::log_since($mark) =~ /MSM00103: memcached node u1 \(unix:\Q$sock\E\) is back/,
   'u1 restarted empty on the same socket: live again, MSM00103');

# ---- logout with the moved cookie; the pre-move cookie reads nothing either
$r = $c->get('/msm/app.cgi?op=destroy');
my $old = MsmTest::client(base => $url);
$old->cookie(MSMSESSION => $sid);
my $ro = $old->get('/msm/app.cgi?op=read');
ok($r->status == 200 && $ro->status == 200 && !defined data_of($ro),
   'logout; the pre-move u1 cookie reads nothing');

# ---- a session on t2 whose backup is on u1: t2 killed, u1 serves it
my ($c2, $sid2) = session_on('t2', 'backed-up-on-the-socket');
ok(node_of($sid2) eq 't2' && MsmTest::wait_until(sub { $u1->holds(hex_of($sid2)) }, timeout => 5),
   'a session on t2 with its backup in the socket memcached u1');
$t2->kill9;
$r = $c2->get('/msm/app.cgi?op=read');
ok($r->status == 200 && (data_of($r) // '') eq 'backed-up-on-the-socket'
   && node_of($c2->cookie('MSMSESSION')) eq 'u1',
   't2 killed (-9): u1 serves the backup over the socket, the cookie moves to u1')
    or diag($r->dump);

# ---- kill -9 u1 while 4 clients read 12 sessions (backups on t2): none lost
$t2->restart;
ok(MsmTest::wait_nodes_live([qw(u1 t2)], base => $url, timeout => 10), 't2 restarted: both live');
my ($placed, $reads, $wrong, $lost, $load) = MsmTest::kill_under_load($url, [$u1, $t2], $u1);
ok($placed && $reads > 12 && $wrong == 0 && $lost == 0,
   "u1 (socket) killed (-9) under load: $reads reads by 4 clients, $wrong wrong or empty, $lost of 12 sessions lost")
    or diag(explain($load));
$h->stop;
$_->stop for $u1, $t2;
unlink $sock;

# ---- sticky mode, both nodes on sockets
my @us = map { MsmTest::memcached(socket => catfile(MsmTest::tmp_dir(), "29-u$_-$$.sock")) } 3, 4;
my $hs = MsmTest::httpd(port => 21338, name => 'unix-sticky', servers => 3,
                        conf => MsmTest::app_conf(join(' ', map { "u$_->[0]:unix:" . $_->[1]->socket_path } [3, $us[0]], [4, $us[1]]),
                                                  't:', "MsmSticky On\nMsmRoute a"));
my $su = $hs->url;
my $stc = MsmTest::client(base => $su);
my $ok_up = MsmTest::wait_nodes_live([qw(u3 u4)], base => $su);
$stc->get('/msm/app.cgi?op=set&k=data&v=sticky-unix');
my $ssid = $stc->cookie('MSMSESSION') // '';
my $in_mc = MsmTest::wait_until(sub { grep { $_->holds(hex_of($ssid)) } @us }, timeout => 5);
my $gets0 = $us[0]->stat('cmd_get') + $us[1]->stat('cmd_get');
my @reads = map { data_of($stc->get('/msm/app.cgi?op=read')) // '' } 1 .. 5;
my $gets = $us[0]->stat('cmd_get') + $us[1]->stat('cmd_get') - $gets0;
ok($ok_up && $ssid =~ /-u[34]\.a$/ && $in_mc && !grep({ $_ ne 'sticky-unix' } @reads) && $gets == 0,
   "sticky over sockets: cookie $ssid, 5 reads served from the local tier ($gets memcached gets), the copy in a socket memcached");
my ($primary) = grep { node_of($ssid) eq $_->[0] } (['u3', $us[0]], ['u4', $us[1]]);
$primary //= ['u3', $us[0]];
my $other = $primary->[1] == $us[0] ? $us[1] : $us[0];
$primary->[1]->kill9;
my $rw = $stc->get('/msm/app.cgi?op=set&k=data&v=after-kill');
my $rr = $stc->get('/msm/app.cgi?op=read');
ok($rw->status == 200 && (data_of($rr) // '') eq 'after-kill'
   && MsmTest::wait_until(sub { $other->holds(hex_of($stc->cookie('MSMSESSION') // '')) }, timeout => 5),
   "sticky: $primary->[0] killed (-9): a write and a read answer 200 and the session is in the other socket memcached")
    or diag($rw->dump);
$hs->stop;
$_->stop for @us;
unlink map { $_->socket_path } @us;
