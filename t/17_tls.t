# TLS to memcached (README, MsmTLS): two memcached with -Z that require a client
# certificate (ssl_verify_mode=2), t1 on 21411 and t2 on 21412 (their clear-text
# listeners 21413, 21414 are for this test's own inspection only), certificates
# from a throwaway CA (MsmTest::tls_pki). Through an extra httpd (21410):
#   - status: tls true / tls="on"; CRUD, primary and backup on the TLS nodes;
#     8 parallel increments under MsmLocking; handshakes in steady state
#     (pooled connections: none), and resumption when memcached closes idle
#     connections;
#   - kill -9 of t1 while 4 clients read 12 sessions: none is lost; SIGSTOP of
#     t2: requests stay within MsmOperationTimeout;
#   - sticky mode over TLS.
# Then, each with an extra httpd (21415) whose list is a good TLS node plus a bad
# one: wrong CA, wrong host name, expired certificate, no client certificate, a
# clear-text memcached (21418) on a TLS node, a TLS memcached on a plain node, a
# silent listener (21419) that records what it receives. Each: httpd -t passes,
# requests answer 200 within the deadline, the good node keeps serving, one
# MSM00101 line names the node and the reason, and no clear-text byte reaches
# the bad node.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use File::Spec::Functions qw(catfile);
use Time::HiRes qw(time sleep);

plan tests => 23, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my $pki = MsmTest::tls_pki();
my %SRV = (cert => $pki->{server}, key => $pki->{server_key}, ca => $pki->{ca}, verify => 2);
my %mc = (t1 => MsmTest::memcached(port => 21411, tls => { %SRV, plain_port => 21413 }),
          t2 => MsmTest::memcached(port => 21412, tls => { %SRV, plain_port => 21414 }));
my $CLIENT_TLS = <<"EOF";
MsmTLS On
MsmTLSCACertificateFile $pki->{ca}
MsmTLSCertificateFile $pki->{client}
MsmTLSCertificateKeyFile $pki->{client_key}
EOF

sub app {
    my ($port, $name, $nodes, $extra, %o) = @_;
    return MsmTest::httpd(port => $port, name => "17-$name", servers => $o{servers} // 2,
                          conf => MsmTest::app_conf($nodes, 't:', $extra, 'MsmLocking On'));
}
sub node_of { MsmTest::cookie_node(@_) // '' }
sub hex_of  { MsmTest::cookie_hex(@_) // '' }
sub data_of { my $r = shift; return (($r->session // {})->{data}) }
sub node_json {
    my $base = shift;
    my $j = MsmTest::client(base => $base)->get('/msm-status')->json // {};
    return { map { $_->{id} => $_ } @{ $j->{nodes} || [] } };
}
sub handshakes {
    my ($base, $field) = @_;
    my $n = node_json($base);
    my $sum = 0;
    $sum += $_->{$field // 'tls_handshakes'} // 0 for values %$n;
    return $sum;
}

# ---------------------------------------------------------------- the good case
my $h = app(21410, 'good', 't1:127.0.0.1:21411 t2:127.0.0.1:21412',
            "$CLIENT_TLS\nMaxKeepAliveRequests 0\n", servers => 2);
my $url = $h->url;
ok(MsmTest::wait_nodes_live([qw(t1 t2)], base => $url), 'httpd (21410) with MsmTLS On: t1 and t2 (TLS, client certificate) live');
my $nj = node_json($url);
ok(($nj->{t1}{tls} // '') && ($nj->{t2}{tls} // '') && ($nj->{t1}{transport} // '') eq 'tcp',
   'status JSON: tls true, transport tcp') or diag(explain($nj));
my $prom = MsmTest::client(base => $url)->get('/msm-status?format=prometheus')->body // '';
like($prom, qr/^msm_node_up\{list="\d+",node="t1",address="127\.0\.0\.1:21411",transport="tcp",tls="on"\} 1$/m,
     'Prometheus: msm_node_up with tls="on"');

my $c = MsmTest::client(base => $url);
$c->get('/msm/app.cgi?op=set&k=data&v=over-tls');
my $sid = $c->cookie('MSMSESSION') // '';
my $r = $c->get('/msm/app.cgi?op=read');
is(data_of($r), 'over-tls', 'a session written and read back over TLS');
my $hex = hex_of($sid);
ok(MsmTest::wait_until(sub { $mc{t1}->holds($hex) && $mc{t2}->holds($hex) }, timeout => 5),
   'its primary and its backup are on the TLS nodes');
$c->get('/msm/app.cgi?op=destroy');
$r = $c->get('/msm/app.cgi?op=read');
ok($r->status == 200 && !defined data_of($r), 'destroyed over TLS: nothing read back');

my $lc = MsmTest::client(base => $url);
my $lock_mark = MsmTest::log_mark($h->error_log);
$lc->get('/msm/app.cgi?op=set&k=data&v=locked');
my ($n200, $count, $why) = MsmTest::parallel_incr($url, $lc->cookie('MSMSESSION') // '', 8);
ok($n200 == 8 && $count == 8, '8 parallel increments with MsmLocking On over TLS: n = 8')
    or diag("$why\n" . join("\n", grep { /msm:/ } split /\n/, MsmTest::log_since($lock_mark)));

# ---- steady state (a session on t1): pooled connections keep their TLS session
# The reads go over one keep-alive connection, so one child serves them all: a
# child that prefork spawns meanwhile (MinSpareServers) would begin with a
# handshake of its own, which says nothing about pooling.
my $warm = MsmTest::client(base => $url, keep_alive => 1);
$warm->cookie(MSMSESSION => (MsmTest::session_on($url, 't1', 'warm'))[1]);
# warm-up: 2.5 s of reads, so that the child also did its once-a-second read
# of the published failures on t2 (connected: no handshake left to do)
my $warm_end = time + 2.5;
$warm->get('/msm/app.cgi?op=read') while time < $warm_end;
my $before = handshakes($url);
my $N = 400;
my $ok = 0;
for (1 .. $N) { $ok++ if (data_of($warm->get('/msm/app.cgi?op=read')) // '') eq 'warm' }
my $during = handshakes($url) - $before;
ok($ok == $N && $during == 0,
   "steady state: $N reads over TLS by one child, $during handshakes (pooled connections keep their TLS session)")
    or diag("reads ok $ok");

# ---- a memcached that closes connections idle for 2 s (idle_timeout), its own
# httpd (21415): the reconnects resume the TLS session
my ($resumed, $new);
{
    my $rmc = MsmTest::memcached(port => 21408, tls => { %SRV, plain_port => 21407 },
                                 args => ['-o', 'idle_timeout=2']);
    my $hr = app(21415, 'resume', 'r:127.0.0.1:21408', $CLIENT_TLS, servers => 1);
    my $rc = MsmTest::client(base => $hr->url);
    $rc->get('/msm/app.cgi?op=set&k=data&v=r');
    $rc->get('/msm/app.cgi?op=read') for 1 .. 5;
    my ($res0, $hs0) = (handshakes($hr->url, 'tls_resumed'), handshakes($hr->url));
    sleep 5;     # memcached closed every idle connection: the next use reconnects
    $rc->get('/msm/app.cgi?op=read') for 1 .. 5;
    ($resumed, $new) = (handshakes($hr->url, 'tls_resumed') - $res0, handshakes($hr->url) - $hs0);
    $hr->stop;
    $rmc->stop;
}
ok($new > 0 && $resumed > 0,
   "after memcached closed the idle connections: $new handshakes, $resumed of them resumed sessions");

# ---- kill -9 t1 while 4 clients read 12 sessions: none is lost
my ($placed, $reads, $wrong, $lost, $load) = MsmTest::kill_under_load($url, [$mc{t1}, $mc{t2}], $mc{t1});
ok($placed, '12 sessions, each with its primary and its backup on the TLS nodes');
ok($reads > 12 && $wrong == 0 && $lost == 0,
   "t1 killed (-9) under load: $reads reads by 4 clients, $wrong wrong or empty, $lost of 12 sessions lost")
    or diag(explain($load));

# ---- SIGSTOP t2 (the only live node now): bounded by MsmOperationTimeout
$mc{t2}->sigstop;
my $t0 = time;
my $rs = MsmTest::client(base => $url, timeout => 20)->get('/msm/app.cgi?op=set&k=data&v=stopped');
my $took = time - $t0;
$mc{t2}->sigcont;
ok($rs->status == 200 && $took < 3,
   sprintf('t2 stopped (SIGSTOP): a request answers %d in %.2f s (MsmOperationTimeout 500)', $rs->status, $took));
$h->stop;
$mc{t1} = MsmTest::memcached(port => 21411, tls => { %SRV, plain_port => 21413 });

# ---- sticky mode over TLS
$h = app(21410, 'sticky', 't1:127.0.0.1:21411 t2:127.0.0.1:21412',
         "$CLIENT_TLS\nMsmSticky On\nMsmRoute a\n");
ok(MsmTest::wait_nodes_live([qw(t1 t2)], base => $url), 'sticky httpd over TLS: t1 and t2 live');
$c = MsmTest::client(base => $url);
$c->get('/msm/app.cgi?op=set&k=data&v=sticky-tls');
$sid = $c->cookie('MSMSESSION') // '';
my $gets0 = $mc{t1}->stat('cmd_get') + $mc{t2}->stat('cmd_get');
my @reads = map { data_of($c->get('/msm/app.cgi?op=read')) // '' } 1 .. 5;
my $gets = $mc{t1}->stat('cmd_get') + $mc{t2}->stat('cmd_get') - $gets0;
ok($sid =~ /\.a$/ && !grep({ $_ ne 'sticky-tls' } @reads)
   && MsmTest::wait_until(sub { $mc{t1}->holds(hex_of($sid)) || $mc{t2}->holds(hex_of($sid)) }, timeout => 5),
   "sticky: cookie .a, 5 reads served ($gets memcached gets), the session is in the TLS memcached");
$h->stop;

# ---------------------------------------------------------------- faults
# a plain memcached, an expired one, and a listener that records and never answers
my %bad = (
    plain   => MsmTest::memcached(port => 21418),
    expired => MsmTest::memcached(port => 21416, tls => { cert => $pki->{expired}, key => $pki->{expired_key},
                                                          plain_port => 21417 }),
);
my $rec_file = catfile(MsmTest::tmp_dir(), "17-recorded-$$");
unlink $rec_file;
my $recorder = MsmTest::process(name => '17-recorder', port => 21419, cmd => [$^X, '-e', <<'EOF', $rec_file]);
use IO::Socket::INET; use IO::Select;
my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 21419, Listen => 16, ReuseAddr => 1) or die $!;
open my $out, '>>', $ARGV[0] or die $!; binmode $out; $out->autoflush(1);
my $sel = IO::Select->new($l); my $end = time + 120;
while (time < $end) {
    for my $s ($sel->can_read(0.2)) {
        if ($s == $l) { my $c = $l->accept; $sel->add($c) if $c; next }
        my $n = sysread($s, my $buf, 65536);
        if ($n) { print $out $buf } else { $sel->remove($s); close $s }
    }
}
EOF

my $GOOD = 't1:127.0.0.1:21411';
my @faults = (
    # name, MsmNodes, TLS config, what MSM00101 says about b, the good node t1 serves
    ['wrong CA', "$GOOD b:127.0.0.1:21412",
     "MsmTLS On\nMsmTLSCACertificateFile $pki->{other_ca}\nMsmTLSCertificateFile $pki->{client}\n"
     . "MsmTLSCertificateKeyFile $pki->{client_key}",
     qr/TLS: the server's certificate is not accepted: (unable to get local issuer|self.signed)/, 0],
    ['wrong host name', "$GOOD b:127.0.0.1:21412", "$CLIENT_TLS\nMsmTLSVerifyName memcached.example.net",
     qr/TLS: the server's certificate is not accepted: [Hh]ostname mismatch/, 0],
    ['expired certificate', "$GOOD b:127.0.0.1:21416", $CLIENT_TLS,
     qr/TLS: the server's certificate is not accepted: certificate has expired/, 1],
    ['no client certificate', "$GOOD b:127.0.0.1:21412", "MsmTLS On\nMsmTLSCACertificateFile $pki->{ca}",
     qr/TLS failed: tlsv13 alert certificate required|TLS: the server reset the connection after the handshake \(does it require a client certificate/, 0],
    ['clear-text memcached on a TLS node', "$GOOD b:127.0.0.1:21418", $CLIENT_TLS, qr/TLS failed: /, 1],
    ['TLS memcached on a plain node', "b:127.0.0.1:21412 p:127.0.0.1:21409", '',
     qr/Connection reset by peer.*is down|is down: not a memcached reply/, 1],
    ['silent listener on a TLS node', "$GOOD b:127.0.0.1:21419", $CLIENT_TLS, qr/timeout specified has expired.*is down/, 1],
);
my $plain_cmds = '';
$bad{p} = MsmTest::memcached(port => 21409);
for my $f (@faults) {
    my ($name, $nodes, $conf, $why, $good_serves) = @$f;
    my $hb = app(21415, 'fault', $nodes, $conf);
    my (@took, @status, @data);
    for my $i (1 .. 4) {
        my $cc = MsmTest::client(base => $hb->url, timeout => 20);
        my $t0 = time;
        $cc->get("/msm/app.cgi?op=set&k=data&v=f$i");
        my $rr = $cc->get('/msm/app.cgi?op=read');
        push @took, time - $t0;
        push @status, $rr->status;
        push @data, data_of($rr) // '';
    }
    my $slowest = (sort { $b <=> $a } @took)[0];
    my $log = MsmTest::log_since([$hb->error_log, 0]);
    my @down = ($log =~ /^(.*MSM00101: memcached node b \([^)]*\) is down.*)$/mg);
    my $served = grep { /^f\d$/ } @data;
    ok(!grep({ $_ != 200 } @status) && $slowest < 2.5 && $served == ($good_serves ? 4 : 0)
       && @down == 1 && $down[0] =~ $why,
       sprintf("%s: 4 new sessions answer 200 (slowest %.2f s), %d served by the other node, one %s",
               $name, $slowest, $served, $down[0] // 'MSM00101: none'))
        or diag(join("\n", grep { /MSM00|AH0/ } split /\n/, $log));
    $hb->stop;
    # what the clear-text memcached saw while it stood on a TLS node
    $plain_cmds = join '+', map { $bad{plain}->stat($_) // 0 } qw(cmd_get cmd_set cmd_touch curr_items)
        if $name =~ /^clear-text/;
}

# what reached the silent listener: TLS handshake records only
my $wire = do { local $/; open my $fh, '<', $rec_file or die "$rec_file: $!"; binmode $fh; <$fh> } // '';
ok(length($wire) > 0 && $wire =~ /^\x16\x03/ && $wire !~ /gets |gats |set |add |MSM1|t:[0-9a-f]{8}/,
   sprintf('the silent listener received %d bytes: a TLS ClientHello, no memcached command or key', length $wire));
ok($plain_cmds eq '0+0+0+0',
   "the clear-text memcached on a TLS node saw no get, set or touch and holds no item ($plain_cmds)");

$recorder->stop;
$_->stop for values %mc, values %bad;
unlink $rec_file;
