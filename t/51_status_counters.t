# Every counter of the msm-status JSON (mod_msm_status.c: "counters", the node
# counters, the sticky tier's counters) shown to move: for each one a request or
# a fault that must raise it, and its delta asserted > 0 on the server it ran on.
# t/50_status.t checks exact deltas of the plain request sequence; this file
# reaches the ones that need faults, locks, sticky mode or TLS. Servers (extra
# httpds, each with its own shared memory and counters):
#   m  (21442): memcached c1 21440, c2 21441; /msm/, /lk/ (MsmLocking On,
#      MsmLockTimeout 400), /auto/ (MsmLocking Auto); MsmLockExpire 2,
#      MsmMaxSessionSize 2048, MsmOperationTimeout 500, MsmNodeRetry 1
#   a, b (21443, 21444): sticky, routes a and b, on c1 c2, MsmStickyCache 64K 1K
#      (about 60 slots: evictions; sessions over 944 bytes: too large for a slot)
#   t  (21447): MsmTLS On to memcached -Z t1 21445 (clear-text 21446) that closes
#      connections idle for 2 s (reconnects resume the TLS session)
# Not moved here: sticky_tier recovered_total (a slot lock taken over from a
# writer that died holding it: a child would have to be killed inside a
# nanosecond-long critical section; tests/ of src/msm_tier.c cover the recovery).
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Time::HiRes qw(time sleep);

my @COUNTERS = qw(created load_hit load_miss saved skipped_unmodified deleted relocated
                  backup_reads backup_hits local_hits takeovers lock_acquired lock_waits
                  lock_wait_us lock_timeouts lock_lost too_large dropped_readonly
                  regenerated unavailable);
my @NODE_COUNTERS = qw(ops errors timeouts tls_handshakes tls_resumed);
my @TIER_COUNTERS = qw(evictions_total too_large_total);
my %NOT_MOVED = (recovered_total => 'a slot lock taken over from a dead writer: not reproducible from outside');

plan tests => 4 + @COUNTERS + @NODE_COUNTERS + @TIER_COUNTERS,
     need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my %mc = (c1 => MsmTest::memcached(port => 21440), c2 => MsmTest::memcached(port => 21441));
my %h;
my $NODES = 'c1:127.0.0.1:21440 c2:127.0.0.1:21441';
$h{m} = MsmTest::httpd(port => 21442, name => 't51-m', servers => 4, conf => MsmTest::app_conf($NODES, 'm51:',
    'MsmLockExpire 2', 'MsmMaxSessionSize 2048', <<"EOF"));
Alias /lk/ "\@T\@/htdocs/msm/"
Alias /auto/ "\@T\@/htdocs/msm/"
<Location /lk/>
    \@APP_SESSION\@
    MsmLocking On
    MsmLockTimeout 400
</Location>
<Location /auto/>
    \@APP_SESSION\@
    MsmLocking Auto
</Location>
EOF
for my $route (qw(a b)) {
    $h{$route} = MsmTest::httpd(port => $route eq 'a' ? 21443 : 21444, name => "t51-$route",
        conf => MsmTest::app_conf($NODES, 's51:', 'MsmSticky On', "MsmRoute $route", 'MsmStickyCache 64K 1K'));
}
my $pki = MsmTest::tls_pki();
my $tmc = MsmTest::memcached(port => 21445, tls => { cert => $pki->{server}, key => $pki->{server_key},
                                                      plain_port => 21446 },
                             args => ['-o', 'idle_timeout=2']);
$h{t} = MsmTest::httpd(port => 21447, name => 't51-t', servers => 1, conf => MsmTest::app_conf(
    't1:127.0.0.1:21445', 't51:', 'MsmTLS On', "MsmTLSCACertificateFile $pki->{ca}", 'KeepAliveTimeout 30'));
my %url = map { $_ => $h{$_}->url } keys %h;

my %seen;     # every counter asserted below
# counters of server $s around $code: the delta of $what (a counter name) must be > 0
sub moves {
    my ($s, $what, $how, $code) = @_;
    my $b = MsmTest::counters($url{$s});
    my @extra = $code->();
    my $d = MsmTest::delta($b, MsmTest::counters($url{$s}));
    $seen{$what}++;
    cmp_ok($d->{$what} // 0, '>', 0, "$what +" . ($d->{$what} // 0) . ": $how") or diag(explain $d, @extra);
}
# the same for a node counter of node $id
sub node_moves {
    my ($s, $id, $what, $how, $code) = @_;
    my $b = MsmTest::status_node($url{$s}, $id) || {};
    $code->();
    my $a = MsmTest::status_node($url{$s}, $id) || {};
    my $d = ($a->{$what} // 0) - ($b->{$what} // 0);
    $seen{$what}++;
    cmp_ok($d, '>', 0, "node $what +$d: $how");
}
sub client_of { my ($s, $sid) = @_; my $c = MsmTest::client(base => $url{$s}, timeout => 20);
                $c->cookie(MSMSESSION => $sid) if defined $sid; return $c }
sub sid_on {     # a session of server m on node $node (value data=$v)
    my ($node, $v) = @_;
    my (undef, $sid) = MsmTest::session_on($url{m}, $node, $v);
    MsmTest::wait_until(sub { my $o = $node eq 'c1' ? 'c2' : 'c1';
                              (($mc{$o}->copy($sid, 'm51:') || {})->{primary} // '') eq $node }, timeout => 5);
    return $sid;
}

ok(MsmTest::wait_nodes_live([qw(c1 c2)], base => $url{m}), 'm: c1, c2 live');

# ---------------------------------------------------------------- plain requests (m)
my $c = client_of('m');
moves(m => 'created', 'a new session', sub { $c->get('/msm/app.cgi?op=set&k=x&v=1') });
moves(m => 'load_hit', 'a read', sub { $c->get('/msm/app.cgi?op=read') });
moves(m => 'saved', 'a change', sub { $c->get('/msm/app.cgi?op=set&k=x&v=2') });
moves(m => 'skipped_unmodified', 'the same value set again', sub { $c->get('/msm/app.cgi?op=set&k=x&v=2') });
moves(m => 'regenerated', 'a login (a "user" entry, MsmRegenerateOnLogin On)',
      sub { $c->get('/msm/app.cgi?op=set&k=user&v=alice') });
moves(m => 'deleted', 'a logout (all entries removed)', sub { $c->get('/msm/app.cgi?op=destroy') });
moves(m => 'load_miss', 'a cookie of an unknown session',
      sub { client_of(m => MsmTest::random_hex() . '-c1')->get('/msm/app.cgi?op=read') });
moves(m => 'backup_reads', 'an unknown session: its backup looked for on the other node',
      sub { client_of(m => MsmTest::random_hex() . '-c2')->get('/msm/app.cgi?op=read') });
moves(m => 'too_large', 'a 3000-byte session (MsmMaxSessionSize 2048)',
      sub { client_of('m')->get('/msm/app.cgi?op=set&k=big&v=' . ('x' x 3000)) });
my $ac = client_of('m');
$ac->get('/msm/app.cgi?op=set&k=n&v=1');
moves(m => 'dropped_readonly', 'a GET that changes the session under MsmLocking Auto',
      sub { $ac->get('/auto/app.cgi?op=incr&k=n') });

# ---------------------------------------------------------------- locks (m)
my $lsid = sid_on('c1', 'lock');
moves(m => 'lock_acquired', 'a request under MsmLocking On',
      sub { client_of(m => $lsid)->get('/lk/app.cgi?op=read') });
# two requests of one session: the first holds the lock $hold ms, the second
# starts 150 ms later and waits (or gives up after MsmLockTimeout 400 ms)
sub contend {
    my $hold = shift;
    my @r = MsmTest::parallel(2, sub {
        my $i = shift;
        sleep 0.15 if $i;
        my $path = $i ? '/lk/app.cgi?op=incr&k=n' : "/lk/app.cgi?op=incr&k=n&sleep_ms=$hold";
        return client_of(m => $lsid)->get($path)->status;
    }, timeout => 20);
    return 'statuses ' . join(' ', map { $_ // '-' } @r);
}
for my $w (qw(lock_waits lock_wait_us)) {
    moves(m => $w, 'a request that waited 100-250 ms for the lock of a 300 ms request', sub { contend(300) });
}
moves(m => 'lock_timeouts', 'a request that gave up after MsmLockTimeout (400 ms) behind a 1200 ms one',
      sub { contend(1200) });
moves(m => 'lock_lost', 'a request of 3.3 s holding a lock that expires within 3 s (MsmLockExpire 2, + 1 s)',
      sub { client_of(m => $lsid)->get('/lk/app.cgi?op=incr&k=n&sleep_ms=3300')->status });

# ---------------------------------------------------------------- faults (m)
my $tsid = sid_on('c1', 'stop');
node_moves(m => 'c1', 'timeouts', 'c1 stopped (SIGSTOP): an operation runs into MsmOperationTimeout', sub {
    $mc{c1}->sigstop->wait_stopped;
    client_of(m => $tsid)->get('/msm/app.cgi?op=read');
    $mc{c1}->sigcont;
});
ok(MsmTest::wait_nodes_live([qw(c1 c2)], base => $url{m}), 'm: c1 live again');
my $ksid = sid_on('c1', 'kill');
$mc{c1}->kill9;
my $kc = client_of(m => $ksid);
my $b = MsmTest::counters($url{m});
node_moves(m => 'c1', 'errors', 'c1 killed: connection refused',
           sub { $kc->get('/msm/app.cgi?op=read') });
my $d = MsmTest::delta($b, MsmTest::counters($url{m}));
for my $what (qw(backup_hits relocated)) {
    $seen{$what}++;
    cmp_ok($d->{$what} // 0, '>', 0, "$what +" . ($d->{$what} // 0)
           . ': c1 killed, its session read from the backup on c2 and moved there');
}
$mc{c2}->kill9;
moves(m => 'unavailable', 'both nodes killed: a new session cannot be stored',
      sub { client_of('m')->get('/msm/app.cgi?op=set&k=y&v=1') });
$mc{$_}->restart for qw(c1 c2);
ok(MsmTest::wait_nodes_live([qw(c1 c2)], base => $url{a}) && MsmTest::wait_nodes_live([qw(c1 c2)], base => $url{b}),
   'c1, c2 restarted: live for the sticky servers');

# ---------------------------------------------------------------- sticky (a, b)
my $sc = client_of('a');
$sc->get('/msm/app.cgi?op=set&k=s&v=1');
moves(a => 'local_hits', 'a sticky read of a session of its route', sub { $sc->get('/msm/app.cgi?op=read') });
moves(b => 'takeovers', "route b serves a session of route a (the balancer failed over)",
      sub { client_of(b => $sc->cookie('MSMSESSION'))->get('/msm/app.cgi?op=read') });
sub tier { return ((MsmTest::msm_status(base => $url{a}) || {})->{sticky_tier}) || {} }
for my $t (['evictions_total', '80 new sessions in a tier of ~60 slots',
            sub { client_of('a')->get("/msm/app.cgi?op=set&k=s&v=$_") for 1 .. 80 }],
           ['too_large_total', 'a 1200-byte session (a 1K slot holds 944 bytes)',
            sub { client_of('a')->get('/msm/app.cgi?op=set&k=big&v=' . ('y' x 1200)) }]) {
    my ($what, $how, $code) = @$t;
    my $b = tier()->{$what} // 0;
    $code->();
    my $dd = (tier()->{$what} // 0) - $b;
    $seen{$what}++;
    cmp_ok($dd, '>', 0, "sticky_tier $what +$dd: $how");
}

# ---------------------------------------------------------------- TLS (t)
# one keep-alive connection, so one child serves all of it: a child prefork spawns
# meanwhile (MinSpareServers) has no TLS session to resume and would handshake anew
my $tc = MsmTest::client(base => $url{t}, timeout => 20, keep_alive => 1);
node_moves(t => 't1', 'tls_handshakes', 'the first connection of the child: a handshake',
           sub { $tc->get('/msm/app.cgi?op=set&k=z&v=1') });
node_moves(t => 't1', 'ops', 'a read over TLS: its gats', sub { $tc->get('/msm/app.cgi?op=read') });
node_moves(t => 't1', 'tls_resumed', 'memcached closed the idle connection (idle_timeout 2 s): the reconnect resumes', sub {
    sleep 4.5;
    $tc->get('/msm/app.cgi?op=read') for 1 .. 3;
});

# ---------------------------------------------------------------- every counter the JSON reports
my $st = MsmTest::msm_status(base => $url{a}) || {};
my %reported = map { $_ => 1 } keys %{ $st->{counters} || {} }, keys %{ $st->{sticky_tier} || {} },
               map { keys %$_ } @{ $st->{nodes} || [] };
delete @reported{qw(list id address transport tls live since latency_sum_us latency_buckets
                    slots entries slot_bytes payload_max)};        # not counters: names, gauges, histogram
is_deeply([sort grep { !$seen{$_} } keys %reported], [sort keys %NOT_MOVED],
          'every counter msm-status reports was moved above, except: '
          . join(', ', map { "$_ ($NOT_MOVED{$_})" } sort keys %NOT_MOVED));
