# Compatibility with memcached-protocol servers. The same subset of the acceptance
# behaviour runs against three kinds of server, each started here, each behind an
# extra httpd whose MsmNodes name two nodes of that kind:
#   memcached   two memcached
#   twemproxy   two nutcracker (Debian's twemproxy), each in front of two memcached
#   yrmcds      two yrmcdsd
# Parts: create/read/modify/destroy; gats, or (twemproxy and yrmcds, which do not
# know gats) its detection, logged once per node (MSM00130), then gets + touch;
# touches counted by the server; sliding expiry; MsmLocking On with release (a
# compare-and-delete "md" on memcached; twemproxy and yrmcds have no meta commands:
# gets + delete, logged once per node, MSM00131); failover of a killed node to the
# backup on the other one. Sessions are copies "MSM1 S <version> <written>
# <primary>\n<value>" under t:<hex>, the backup the same key on the other node
# (MsmTest::parse_copy); log lines name sessions by their tag, never by their id.
# Ports 21250-21266 (outside MsmTest's default range: any_port).
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use File::Path qw(make_path remove_tree);
use File::Spec::Functions qw(catfile catdir);
use Time::HiRes qw(time sleep);

my @KINDS = qw(memcached twemproxy yrmcds);
my $NUT = -x '/usr/sbin/nutcracker' ? '/usr/sbin/nutcracker' : '';
my $YRM = -x '/usr/sbin/yrmcdsd' ? '/usr/sbin/yrmcdsd' : '';

plan tests => 3 * 38 + 2,
    need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm(),
           'Debian package nutcracker is not installed' => $NUT,
           'Debian package yrmcds is not installed' => $YRM };

my $IDLE = 8;            # MsmIdleTimeout: a read refreshes (rewrites) after IDLE/2 s
my $base = catdir(MsmTest::tmp_dir(), 'compat');
remove_tree($base);
make_path($base);

# ------------------------------------------------------------ servers
my %K;   # kind => { nodes => [[id, port]...], kill => {id => sub}, touches => sub, httpd }

# memcached
{
    my %m = (mc1 => MsmTest::memcached(port => 21250, any_port => 1),
             mc2 => MsmTest::memcached(port => 21251, any_port => 1));
    $K{memcached} = {
        nodes  => [[mc1 => 21250], [mc2 => 21251]],
        procs  => \%m,
        kill   => { map { my $id = $_; $id => sub { $m{$id}->kill9 } } keys %m },
        # gats counts as cmd_touch; gets as cmd_get (but for the once-a-second read of
        # the published node failures, t:msm-failures: MsmTest::Memcached::failure_ops)
        counts => sub {
            my %c = (touch => 0, get => 0);
            for (values %m) {
                my $s = $_->stats;
                $c{touch} += $s->{cmd_touch};
                $c{get} += $s->{cmd_get} - $_->failure_ops->{get};
            }
            return \%c;
        },
        # the TTL of a key on one node (the backup, on the other node, lives longer)
        ttl_of => sub { my ($k, $node) = @_; return $m{$node} ? $m{$node}->ttl($k) : undef },
        http_port => 21252,
    };
}

# twemproxy: nutcracker tw1 (21253, stats 21254) in front of 21257 + 21258,
#            nutcracker tw2 (21255, stats 21256) in front of 21259 + 21260
{
    my %back = (tw1 => [21257, 21258], tw2 => [21259, 21260]);
    my %bmc;
    my %nut;
    my %listen = (tw1 => [21253, 21254], tw2 => [21255, 21256]);
    for my $id (sort keys %back) {
        $bmc{$id} = [ map { MsmTest::memcached(port => $_, any_port => 1) } @{ $back{$id} } ];
        my $yml = catfile($base, "$id.yml");
        open my $fh, '>', $yml or die "$yml: $!";
        print $fh <<"EOF";
$id:
  listen: 127.0.0.1:$listen{$id}[0]
  hash: fnv1a_64
  distribution: ketama
  timeout: 400
  auto_eject_hosts: false
  server_connections: 1
  servers:
   - 127.0.0.1:$back{$id}[0]:1 ${id}a
   - 127.0.0.1:$back{$id}[1]:1 ${id}b
EOF
        close $fh;
        $nut{$id} = MsmTest::process(
            name => "nutcracker-$id", port => $listen{$id}[0], any_port => 1,
            cmd  => [$NUT, '-c', $yml, '-a', '127.0.0.1', '-s', $listen{$id}[1],
                     '-o', catfile($base, "$id.log"), '-v', 5]);
    }
    my @all = map { @{ $bmc{$_} } } sort keys %bmc;
    $K{twemproxy} = {
        nodes  => [[tw1 => 21253], [tw2 => 21255]],
        procs  => { %nut, map { ("$_-mc" => $bmc{$_}) } keys %bmc },
        kill   => { map { my $id = $_; $id => sub { $nut{$id}->kill9 } } keys %nut },
        counts => sub {
            my %c = (touch => 0, get => 0);
            for (@all) { my $s = $_->stats; $c{touch} += $s->{cmd_touch}; $c{get} += $s->{cmd_get} }
            return \%c;
        },
        # the TTL of a key on one node: on the memcached behind that node's nutcracker
        ttl_of => sub {
            my ($k, $node) = @_;
            for (@{ $bmc{$node} || [] }) { my $t = $_->ttl($k); return $t if defined $t }
            undef;
        },
        http_port => 21261,
    };
}

# yrmcds: yr1 (21262, repl 21263), yr2 (21264, repl 21265), foreground, this user
{
    my %y;
    my %p = (yr1 => [21262, 21263], yr2 => [21264, 21265]);
    for my $id (sort keys %p) {
        my $d = catdir($base, $id);
        make_path(catdir($d, 'tmp'));
        my $cf = catfile($d, 'yrmcds.conf');
        open my $fh, '>', $cf or die "$cf: $!";
        print $fh <<"EOF";
virtual_ip = "127.0.0.1"
port = $p{$id}[0]
repl_port = $p{$id}[1]
max_connections = 200
temp_dir = "$d/tmp"
log.threshold = info
log.file = "$d/yrmcds.log"
buckets = 10000
max_data_size = 2M
heap_data_limit = 256K
memory_limit = 64M
workers = 2
gc_interval = 10
EOF
        close $fh;
        MsmTest::_check_port($p{$id}[1], any_port => 1);
        $y{$id} = MsmTest::process(name => "yrmcds-$id", port => $p{$id}[0], any_port => 1,
                                   cmd => [$YRM, '-f', $cf]);
    }
    $K{yrmcds} = {
        nodes  => [[yr1 => 21262], [yr2 => 21264]],
        procs  => \%y,
        kill   => { map { my $id = $_; $id => sub { $y{$id}->kill9 } } keys %y },
        # "stats ops": text:touch, text:gets, text:get
        counts => sub {
            my %c = (touch => 0, get => 0);
            for (values %y) {
                my $s = $_->mc->stats('ops');
                $c{touch} += $s->{'text:touch'} // 0;
                $c{get} += ($s->{'text:gets'} // 0) + ($s->{'text:get'} // 0);
            }
            return \%c;
        },
        ttl_of => sub { undef },
        http_port => 21266,
    };
}

for my $k (@KINDS) {
    my $kd = $K{$k};
    my $nodes = join ' ', map { "$_->[0]:127.0.0.1:$_->[1]" } @{ $kd->{nodes} };
    $kd->{mc} = { map { $_->[0] => MsmTest::mc_at($_->[1]) } @{ $kd->{nodes} } };
    $kd->{ids} = [ map { $_->[0] } @{ $kd->{nodes} } ];
    $kd->{httpd} = MsmTest::httpd(port => $kd->{http_port}, name => "compat-$k", any_port => 1,
                                  servers => 3, conf => <<"EOF");
MsmNodes $nodes
MsmKeyPrefix t:
MsmOperationTimeout 500
MsmNodeRetry 1
MsmIdleTimeout $IDLE
MsmLockExpire 5
Alias /lock/ "\@T\@/htdocs/msm/"
<Location /msm/>
    \@APP_SESSION\@
</Location>
<Location /lock/>
    \@APP_SESSION\@
    MsmLocking On
    MsmLockTimeout 3000
</Location>
<Location /msm-status>
    SetHandler msm-status
</Location>
EOF
    $kd->{mark} = MsmTest::log_mark($kd->{httpd}->error_log);
    $kd->{client} = sub { MsmTest::client(base => $kd->{httpd}->url, timeout => 20) };
}

# ------------------------------------------------------------ result table
my %R;
sub rec {
    my ($kind, $part, $res) = @_;
    $R{$kind}{$part} = 1 unless exists $R{$kind}{$part};
    $R{$kind}{$part} = 0 unless $res;
    return $res;
}
sub node_of { my $cv = shift // ''; return $cv =~ /^[0-9a-f]{32}-(\w+)$/ ? $1 : undef }
sub log_of { my $kd = shift; return MsmTest::log_since($kd->{mark}) }
sub counter {
    my ($kd, $name) = @_;
    my $st = MsmTest::msm_status(base => $kd->{httpd}->url) or return -1;
    return $st->{counters}{$name} // -1;
}

# ------------------------------------------------------------ 1. create/read/modify/destroy
for my $k (@KINDS) {
    my $kd = $K{$k};
    my $c = $kd->{client}->();
    my $r = $c->get('/msm/app.cgi?op=set&k=user&v=alice');
    rec($k, 'crud', is($r->status, 200, "[$k] create")) or diag($r->dump);
    my $cv = $c->cookie('MSMSESSION') // '';
    my $node = node_of($cv) // $kd->{ids}[0];
    rec($k, 'crud', like($cv, qr/^[0-9a-f]{32}-(\Q$kd->{ids}[0]\E|\Q$kd->{ids}[1]\E)$/,
                         "[$k] cookie names one of the nodes ($cv)"));
    my $cp = $kd->{mc}{$node}->copy($cv) || {};
    rec($k, 'crud', ok(($cp->{primary} // '') eq $node && ($cp->{payload} // '') =~ /user=alice/,
                       "[$k] stored through the server (a copy naming $node as primary)"));
    rec($k, 'crud', is_deeply($c->get('/msm/app.cgi?op=read')->session, { user => 'alice' },
                              "[$k] read back"));
    my @v = map { $c->get('/msm/app.cgi?op=incr&k=n')->field('value') // 'undef' } 1 .. 2;
    rec($k, 'crud', is("@v", '1 2', "[$k] modify: incr 1, 2"));
    rec($k, 'crud', is_deeply($c->get('/msm/app.cgi?op=read')->session,
                              { user => 'alice', n => 2 }, "[$k] read after modify"));
    my $other = $node eq $kd->{ids}[0] ? $kd->{ids}[1] : $kd->{ids}[0];
    rec($k, 'crud', ok(MsmTest::wait_until(sub { (($kd->{mc}{$other}->copy($cv) || {})->{primary} // '') eq $node },
                                           timeout => 5),
                       "[$k] backup on the other node (the same key, naming $node)"));
    $r = $c->get('/msm/app.cgi?op=destroy');
    rec($k, 'crud', is($r->status, 200, "[$k] destroy"));
    rec($k, 'crud', is_deeply($c->get('/msm/app.cgi?op=read')->session, {}, "[$k] read after destroy: empty"));
    # a destroy writes a tombstone over every copy (no deletes)
    rec($k, 'crud', ok(MsmTest::wait_until(sub {
            !grep { (($kd->{mc}{$_}->copy($cv) || {})->{kind} // '') ne 'D' } $node, $other },
            timeout => 5), "[$k] destroy: key and backup replaced by tombstones"));
}

# ------------------------------------------------------------ 2. reads on both nodes: gats or its detection
for my $k (@KINDS) {
    my $kd = $K{$k};
    # one session on each node (new sessions go to a node chosen at random)
    my %on;
    for (1 .. 40) {
        my $c = $kd->{client}->();
        $c->get('/msm/app.cgi?op=set&k=x&v=1');
        my $n = node_of($c->cookie('MSMSESSION')) or next;
        $on{$n} //= $c;
        last if keys %on == 2;
    }
    rec($k, 'gats', is(scalar(keys %on), 2, "[$k] a session on each node"));
    my $before = $kd->{counts}->();
    my $ok = 1;
    for my $n (sort keys %on) {
        for (1 .. 4) {          # several reads: several children
            my $s = $on{$n}->get('/msm/app.cgi?op=read')->session;
            $ok = 0 unless ref $s eq 'HASH' && ($s->{x} // '') eq '1';
        }
    }
    my $after = $kd->{counts}->();
    rec($k, 'gats', ok($ok, "[$k] 8 reads on both nodes return the session"));
    my $touch = $after->{touch} - $before->{touch};
    my $gets  = $after->{get} - $before->{get};
    $kd->{touch8} = "touch=$touch get=$gets";
    rec($k, 'touch', cmp_ok($touch, '>=', 8, "[$k] every read touched the session (touches: $touch)"));
    my $log = log_of($kd);
    my %n130;
    $n130{$1}++ while $log =~ /MSM00130: memcached node (\w+) /g;
    if ($k eq 'memcached') {
        rec($k, 'gats', is($gets, 0, "[$k] reads use gats: no get counted"));
        rec($k, 'gats', is_deeply(\%n130, {}, "[$k] MSM00130 not logged"));
    }
    else {
        rec($k, 'gats', cmp_ok($gets, '>=', 8, "[$k] reads fall back to gets ($gets)"));
        rec($k, 'gats', is_deeply(\%n130, { map { $_ => 1 } @{ $kd->{ids} } },
                                  "[$k] MSM00130 exactly once per node"))
            or diag(explain \%n130);
    }
    rec($k, 'gats', unlike($log, qr/MSM0010[12]/, "[$k] no node marked down by the reads"));
}

# ------------------------------------------------------------ 3. sliding expiry (interleaved)
# created at t0 (memcached expires it 7-8 s later: its clock has 1 s steps), read
# once at t0+2.5 (before IDLE/2 = 4 s: a touch, no rewrite; expiry t0+9.5..10.5):
# alive at t0+8.75, and gone without further reads at t0+2.5+IDLE+1.5
{
    my (%c, %key);
    my $t0 = time;
    for my $k (@KINDS) {
        my $kd = $K{$k};
        $c{$k} = $kd->{client}->();
        $c{$k}->get('/msm/app.cgi?op=set&k=slide&v=1');
        $key{$k} = $c{$k}->cookie('MSMSESSION') // '';
    }
    sleep 2.5 - (time - $t0) if time - $t0 < 2.5;
    my %ttl;
    for my $k (@KINDS) {
        my $kd = $K{$k};
        my $s = $c{$k}->get('/msm/app.cgi?op=read')->session;
        rec($k, 'sliding', is_deeply($s, { slide => 1 }, "[$k] sliding: read at +2.5 s"));
        $ttl{$k} = $kd->{ttl_of}->(MsmTest::session_key($key{$k}), node_of($key{$k}) // $kd->{ids}[0]);
        # memcached behind: its TTL restarted (yrmcds has no command to show it)
        rec($k, 'sliding', cmp_ok($ttl{$k} // -1, '>=', $IDLE - 1,
                                  "[$k] sliding: TTL back to $IDLE s after the read"))
            unless $k eq 'yrmcds';
    }
    sleep $IDLE + 0.75 - (time - $t0) if time - $t0 < $IDLE + 0.75;
    for my $k (@KINDS) {
        my $kd = $K{$k};
        my $n = node_of($key{$k}) // $kd->{ids}[0];
        rec($k, 'sliding', ok((($kd->{mc}{$n}->copy($key{$k}) || {})->{kind} // '') eq 'S',
            sprintf '[%s] sliding: alive %.1f s after its write (MsmIdleTimeout %d; TTL after the read: %s)',
                    $k, time - $t0, $IDLE, $ttl{$k} // 'n/a'));
    }
    my $gone_at = 2.5 + $IDLE + 1.5;
    sleep $gone_at - (time - $t0) if time - $t0 < $gone_at;
    for my $k (@KINDS) {
        my $kd = $K{$k};
        my $n = node_of($key{$k}) // $kd->{ids}[0];
        rec($k, 'sliding', ok(!defined $kd->{mc}{$n}->get(MsmTest::session_key($key{$k})),
            sprintf '[%s] sliding: expired %.1f s after the last read', $k, time - $t0 - 2.5));
    }
}

# ------------------------------------------------------------ 4. locking
for my $k (@KINDS) {
    my $kd = $K{$k};
    my $c = $kd->{client}->();
    $c->get('/lock/app.cgi?op=set&k=who&v=me');
    my $cv = $c->cookie('MSMSESSION') // '';
    my $node = node_of($cv) // $kd->{ids}[0];
    my $acq0 = counter($kd, 'lock_acquired');
    my $url = $kd->{httpd}->url;
    my @res = MsmTest::parallel(2, sub {
        my $i = shift;
        sleep 0.2 * $i;
        my $w = MsmTest::client(base => $url, timeout => 20);
        $w->cookie(MSMSESSION => $cv);
        my $t = time;
        my $r = $w->get('/lock/app.cgi?op=incr&k=n&sleep_ms=700');
        return { status => $r->status, value => $r->field('value'), elapsed => time - $t };
    }, timeout => 30);
    my @vals = sort map { $_->{value} // 'undef' } @res;
    rec($k, 'locking', is("@vals", '1 2', "[$k] two parallel increments serialised: 1 2"))
        or diag(explain \@res);
    rec($k, 'locking', cmp_ok($res[1]{elapsed} // 0, '>=', 1.1,
        sprintf '[%s] the second waited for the lock (%.2f s)', $k, $res[1]{elapsed} // 0));
    rec($k, 'locking', ok(MsmTest::wait_until(sub { !defined $kd->{mc}{$node}->get(MsmTest::lock_key($cv)) },
                                              timeout => 1),
                          "[$k] lock released (lock key gone)"));
    my $t = time;
    my $r = $c->get('/lock/app.cgi?op=incr&k=n');
    rec($k, 'locking', is($r->field('value'), 3, "[$k] next request: 3"));
    # a lock left behind would hold it for MsmLockExpire (5 s) or MsmLockTimeout (3 s)
    rec($k, 'locking', cmp_ok(time - $t, '<', 1.5,
        sprintf '[%s] next request did not wait (%.3f s)', $k, time - $t));
    rec($k, 'locking', cmp_ok(counter($kd, 'lock_acquired') - $acq0, '>=', 3,
                              "[$k] msm-status lock_acquired +3"));
    $kd->{lockwait} = sprintf '%.2f', $res[1]{elapsed} // 0;
}

# ------------------------------------------------------------ 5. failover
for my $k (@KINDS) {
    my $kd = $K{$k};
    rec($k, 'gats', unlike(log_of($kd), qr/MSM0010[12]/, "[$k] no node was marked down before the failover"));
    my $c = $kd->{client}->();
    $c->get('/msm/app.cgi?op=set&k=f&v=kept');
    my $cv = $c->cookie('MSMSESSION') // '';
    my ($hex) = $cv =~ /^([0-9a-f]{32})-/;
    $hex //= 'none';
    my $node = node_of($cv) // $kd->{ids}[0];
    my $other = $node eq $kd->{ids}[0] ? $kd->{ids}[1] : $kd->{ids}[0];
    rec($k, 'failover', ok(MsmTest::wait_until(sub { (($kd->{mc}{$other}->copy($cv) || {})->{primary} // '') eq $node },
                                               timeout => 5),
                           "[$k] backup of the session on $other"));
    my $mark = MsmTest::log_mark($kd->{httpd}->error_log);
    $kd->{kill}{$node}->();
    rec($k, 'failover', ok(!MsmTest::port_open(+{ map { @$_ } @{ $kd->{nodes} } }->{$node}),
                           "[$k] node $node killed"));
    my $r = $c->get('/msm/app.cgi?op=read');
    rec($k, 'failover', is($r->status, 200, "[$k] read after the kill: 200"));
    rec($k, 'failover', is_deeply($r->session, { f => 'kept' }, "[$k] the session survived"));
    rec($k, 'failover', is($c->cookie('MSMSESSION'), "$hex-$other",
                           "[$k] moved to $other: same id, new node"));
    my $flog = MsmTest::log_since($mark);
    my $tag = MsmTest::session_tag($hex) // 'none';
    rec($k, 'failover', like($flog, qr/MSM00110: session $tag moved to node \Q$other\E\b/,
                             "[$k] MSM00110 logged, naming the session by its tag $tag"));
    my @ids = MsmTest::ids_in($flog);
    rec($k, 'failover', is_deeply(\@ids, [], "[$k] no session id (32 hex digits) in the error_log"))
        or diag(join "\n", grep { my $l = $_; grep { index($l, $_) >= 0 } @ids } split /\n/, $flog);
    rec($k, 'failover', is($c->get('/msm/app.cgi?op=incr&k=n')->field('value'), 1,
                           "[$k] the moved session is writable"));
    rec($k, 'failover', is_deeply($c->get('/msm/app.cgi?op=read')->session, { f => 'kept', n => 1 },
                                  "[$k] and reads back"));
}

# ------------------------------------------------------------ end
for my $k (@KINDS) {
    my $kd = $K{$k};
    my $log = log_of($kd);
    my %n130;
    $n130{$1}++ while $log =~ /MSM00130: memcached node (\w+) /g;
    my $want = $k eq 'memcached' ? {} : { map { $_ => 1 } @{ $kd->{ids} } };
    rec($k, 'gats', is_deeply(\%n130, $want, "[$k] over the whole run: MSM00130 once per node"
                                            . ($k eq 'memcached' ? ' (never here)' : '')));
    # no meta commands (md): the lock release falls back to gets + delete, logged once
    # per node that released a lock (the locks of part 4 are on their sessions' nodes)
    my %n131;
    $n131{$1}++ while $log =~ /MSM00131: memcached node (\w+) /g;
    my %ids = map { $_ => 1 } @{ $kd->{ids} };
    rec($k, 'locking', ok($k eq 'memcached' ? !%n131
                          : (%n131 && !grep { $n131{$_} != 1 || !$ids{$_} } keys %n131),
                          "[$k] MSM00131 (no meta commands) " . ($k eq 'memcached' ? 'never logged'
                          : 'logged once per node that released a lock (' . join(',', map { "$_ x$n131{$_}" } sort keys %n131) . ')')))
        or diag(explain \%n131);
    my $all = $log . do { local $/; open my $fh, '<', catfile($kd->{httpd}->dir, 'logs', 'stderr.log'); <$fh> // '' };
    rec($k, 'crud', unlike($all, qr/exit signal|Segmentation|AddressSanitizer|runtime error:/,
                           "[$k] no crash"));
}

my @parts = qw(crud gats touch sliding locking failover);
diag(sprintf '%-10s' . ' %-9s' x @parts . ' %s', 'server', @parts, 'notes');
for my $k (@KINDS) {
    diag(sprintf '%-10s' . ' %-9s' x @parts . ' %s', $k,
         (map { !exists $R{$k}{$_} ? '-' : $R{$k}{$_} ? 'pass' : 'FAIL' } @parts),
         "8 reads: $K{$k}{touch8}; lock wait $K{$k}{lockwait} s");
}

for my $k (@KINDS) { $K{$k}{httpd}->stop }
