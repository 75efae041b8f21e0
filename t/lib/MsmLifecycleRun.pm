package MsmLifecycleRun;
# The RECORDING side of the lifecycle test (t/90_lifecycle.t): real memcached
# nodes and real httpds with mod_msm and the Lua app t/htdocs/lc/app.lua,
# browser-like client processes that record every operation, and a nemesis
# that injects one bounded fault at a time. The checker is t/lib/MsmLifecycle.pm.
#
#   my $run = MsmLifecycleRun::run_mode('nonsticky', seconds => 30, clients => 8,
#                                       browsers => 3, seed => 42);
#   $run->{records}   the merged history (meta, ops, faults), sorted by t0
#   $run->{file}      t/logs/lifecycle/<mode>.jsonl
#   $run->{params}    what the checker needs (locking, loss window, ...)
#
# Modes (ports 21500-21599 only, all on 127.0.0.1):
#   nonsticky  one prefork httpd (21510, app B vhost on 21511), memcached n1-n3
#              on 21501-21503, MsmLocking Off, MsmOperationTimeout 300, MsmNodeRetry 1;
#              app B = another MsmKeyPrefix on the same nodes
#   locking    the same with the event MPM (21530/21531, memcached 21521-21523),
#              MsmLocking On, MsmLockTimeout 10000 (G4 checked)
#   sticky     back ends a (prefork, 21550, B on 21551) and b (event, 21552, B on
#              21553), MsmSticky On, routes a/b, memcached m1-m3 on 21541-21543;
#              vhost B: SAME node ids, route and key prefix, its own memcached
#              21544-21546; a mod_proxy_balancer front (prefork, 21555)
# Faults (one at a time, every 1.5-3 s, drawn from a seeded shuffled bag so that
# every kind comes in each round): mc_kill9 (kill -9 of a node,
# restarted empty on its port after 0.3-1.5 s), mc_stop (SIGSTOP 1 s, SIGCONT),
# httpd_graceful (SIGUSR1 to an httpd parent), sticky: backend_kill9 (parent and
# children by pid, started again with the same config after 0.5-1 s).
use strict;
use warnings;

use Carp qw(croak);
use File::Path qw(make_path);
use File::Spec::Functions qw(catfile catdir);
use IO::Socket::INET ();
use IO::Select ();
use POSIX ();
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(clock_gettime CLOCK_MONOTONIC sleep);
use Time::Local ();
use MsmTest;
use MsmLifecycle;

sub now { clock_gettime(CLOCK_MONOTONIC) }

our $LUA_SO = '/usr/lib/apache2/modules/mod_lua.so';
our $APP = '/lc/app.lua';
our $COOKIE = 'MSMSESSION';

# ================================================================ HTTP client
# One pool of keep-alive connections per client process. exchange(@reqs) sends
# every request at once (each on a connection of its own) and waits for all
# answers: a single request or a burst of parallel requests with one cookie.
# No retry, ever: a connection that breaks (or a timeout) makes status 599.
# A pooled connection the server closed while idle is dropped BEFORE a
# request is written on it (it is readable: EOF), so that is no failure.
package MsmLifecycleRun::Http;
use strict;
use warnings;
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Errno qw(EAGAIN EINTR EWOULDBLOCK);

sub new {
    my ($class, %o) = @_;
    return bless { idle => {}, timeout => $o{timeout} // 15, keep => $o{keep} // 2 }, $class;
}

sub _conn {
    my ($self, $port) = @_;
    my $idle = $self->{idle}{$port} ||= [];
    while (my $s = pop @$idle) {
        my $rin = '';
        vec($rin, fileno($s), 1) = 1;
        my $n = select(my $rout = $rin, undef, undef, 0);
        if ($n) { close $s; next }      # EOF (closed while idle) or junk
        return $s;
    }
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp',
                                  Timeout => 5)
        or return (undef, "connect: $!");
    setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
    binmode $s;
    return $s;
}

sub _release {
    my ($self, $port, $s) = @_;
    my $idle = $self->{idle}{$port} ||= [];
    if (@$idle >= $self->{keep}) { close $s; return }
    push @$idle, $s;
}

sub close_all {
    my $self = shift;
    for my $l (values %{ $self->{idle} }) { close $_ for @$l; @$l = () }
}

# parses what arrived; true once the response is complete
sub _parse {
    my $a = shift;
    if (!$a->{hdr}) {
        my $i = index($a->{buf}, "\r\n\r\n");
        return 0 if $i < 0;
        my $head = substr($a->{buf}, 0, $i);
        substr($a->{buf}, 0, $i + 4) = '';
        my @l = split /\r\n/, $head;
        my $sl = shift @l // '';
        if ($sl !~ m{^HTTP/1\.(\d) (\d{3})}) { $a->{bad} = "bad status line"; return 1 }
        $a->{q}{status} = $2 + 0;
        $a->{close} = $1 eq '0';
        for (@l) {
            my ($n, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
            $n = lc $n;
            if ($n eq 'set-cookie') { push @{ $a->{setc} }, $v }
            elsif ($n eq 'content-length') { $a->{cl} = $v + 0 }
            elsif ($n eq 'transfer-encoding') { $a->{chunked} = $v =~ /chunked/i }
            elsif ($n eq 'connection') { $a->{close} = 1 if $v =~ /close/i }
        }
        $a->{hdr} = 1;
        $a->{body} = '';
    }
    if ($a->{chunked}) {
        while (1) {
            if (defined $a->{need}) {
                return 0 if length($a->{buf}) < $a->{need} + 2;
                $a->{body} .= substr($a->{buf}, 0, $a->{need});
                substr($a->{buf}, 0, $a->{need} + 2) = '';
                delete $a->{need};
                next;
            }
            my $i = index($a->{buf}, "\r\n");
            return 0 if $i < 0;
            my ($size) = substr($a->{buf}, 0, $i) =~ /^([0-9a-fA-F]+)/;
            if (!defined $size) { $a->{bad} = 'bad chunk'; return 1 }
            $size = hex $size;
            if ($size == 0) {
                my $j = index($a->{buf}, "\r\n\r\n");   # (no trailers expected)
                return 0 if $j < 0 && $a->{buf} !~ /^0+\r\n\r\n/;
                return 1;
            }
            substr($a->{buf}, 0, $i + 2) = '';
            $a->{need} = $size;
        }
    }
    if (defined $a->{cl}) {
        return 0 if length($a->{buf}) < $a->{cl};
        $a->{body} = substr($a->{buf}, 0, $a->{cl});
        return 1;
    }
    return 0;       # until the server closes
}

# exchange(@reqs): each { port, path, cookie } gets t0, t1, status, setc (list
# of raw Set-Cookie values), body, err
sub exchange {
    my ($self, @reqs) = @_;
    my @act;
    for my $q (@reqs) {
        $q->{t0} = MsmLifecycleRun::now();
        my ($s, $err) = $self->_conn($q->{port});
        if (!$s) { @{$q}{qw(status err t1)} = (599, $err, MsmLifecycleRun::now()); next }
        my $req = "GET $q->{path} HTTP/1.1\r\nHost: 127.0.0.1:$q->{port}\r\n"
                . (defined $q->{cookie} ? "Cookie: $MsmLifecycleRun::COOKIE=$q->{cookie}\r\n" : '')
                . "\r\n";
        my $w = syswrite($s, $req);
        if (!defined $w || $w != length $req) {
            close $s;
            @{$q}{qw(status err t1)} = (599, 'write: ' . ($! || 'short'), MsmLifecycleRun::now());
            next;
        }
        push @act, { q => $q, s => $s, buf => '', setc => [] };
    }
    my $deadline = MsmLifecycleRun::now() + $self->{timeout};
    my $guard = 0;
    while (@act && $guard++ < 1_000_000) {
        my $rin = '';
        vec($rin, fileno($_->{s}), 1) = 1 for @act;
        my $left = $deadline - MsmLifecycleRun::now();
        last if $left <= 0;
        my $n = select(my $rout = $rin, undef, undef, $left);
        next if $n <= 0;
        my @still;
        for my $a (@act) {
            if (!vec($rout, fileno($a->{s}), 1)) { push @still, $a; next }
            my $got = sysread($a->{s}, $a->{buf}, 65536, length $a->{buf});
            if (!defined $got) {
                if ($! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR) { push @still, $a; next }
                $self->_fail($a, "read: $!");
                next;
            }
            if ($got == 0) {
                if ($a->{hdr} && !defined $a->{cl} && !$a->{chunked}) {
                    $a->{body} = $a->{buf};
                    $a->{close} = 1;
                    $self->_done($a);
                }
                else { $self->_fail($a, 'connection closed' . ($a->{hdr} ? ' in the body' : '')) }
                next;
            }
            if (_parse($a)) { $self->_done($a) } else { push @still, $a }
        }
        @act = @still;
    }
    $self->_fail($_, 'timeout') for @act;
    return @reqs;
}

sub _fail {
    my ($self, $a, $err) = @_;
    close $a->{s};
    my $q = $a->{q};
    $q->{t1} = MsmLifecycleRun::now();
    $q->{status} = 599;      # even when a status line arrived: the answer is incomplete
    $q->{err} = $err;
    $q->{setc} = [];
}

sub _done {
    my ($self, $a) = @_;
    my $q = $a->{q};
    $q->{t1} = MsmLifecycleRun::now();
    if ($a->{bad}) { $self->_fail($a, $a->{bad}); return }
    $q->{setc} = $a->{setc};
    $q->{body} = $a->{body};
    if ($a->{close}) { close $a->{s} } else { $self->_release($q->{port}, $a->{s}) }
}

# ================================================================ browsers
package MsmLifecycleRun;

my %MON = (jan => 0, feb => 1, mar => 2, apr => 3, may => 4, jun => 5,
           jul => 6, aug => 7, sep => 8, oct => 9, nov => 10, dec => 11);

# [value, cleared] of the session cookie in one Set-Cookie header, or ()
sub parse_set_cookie {
    my $sc = shift;
    my ($nv, @attrs) = split /;\s*/, $sc;
    my ($n, $v) = split /=/, $nv // '', 2;
    return () unless defined $n;
    $n =~ s/^\s+|\s+$//g;
    return () unless $n eq $COOKIE;
    $v //= '';
    $v =~ s/^\s+|\s+$//g;
    my $clear = 0;
    for (@attrs) {
        my ($an, $av) = split /=/, $_, 2;
        $an = lc($an // '');
        $an =~ s/^\s+|\s+$//g;
        if ($an eq 'max-age' && defined $av && $av =~ /^\s*(-?\d+)\s*$/ && $1 <= 0) { $clear = 1 }
        elsif ($an eq 'expires' && defined $av
               && $av =~ /(\d{1,2})[ -]([A-Za-z]{3})[ -](\d{2,4})\s+(\d\d):(\d\d):(\d\d)/) {
            my ($d, $m, $y) = ($1, $MON{ lc $2 }, $3);
            $y += $y < 70 ? 2000 : 1900 if $y < 100;
            my $t = defined $m ? eval { Time::Local::timegm($6, $5, $4, $d, $m, $y) } : undef;
            $clear = 1 if defined $t && $t < time;
        }
    }
    return [$v, $clear];
}

my $JSON;
sub _json {
    return $JSON //= eval { require JSON::XS; JSON::XS->new->utf8 }
                  || do { require JSON::PP; JSON::PP->new->utf8 };
}

# cfg: { ci, mode, port_a => N, cross_port => sub($cookie) -> port|undef, seconds,
#        browsers, seed, start, file, timeout, mix => {...} }
sub client_main {
    my ($cfg) = @_;
    my $ci = $cfg->{ci};
    srand(($cfg->{seed} * 1009 + $ci * 7919 + 17) % 2147483647);
    $SIG{PIPE} = 'IGNORE';
    my $http = MsmLifecycleRun::Http->new(timeout => $cfg->{timeout}, keep => 4);
    my $json = _json();
    open my $out, '>', $cfg->{file} or die "client $ci: $cfg->{file}: $!";
    my @br = map { { i => $_, jar => undef, sid => undef, pool => [], k => 0 } } 0 .. $cfg->{browsers} - 1;
    my ($seq, $nburst, @buf) = (0, 0);
    my $flush = sub { print $out @buf; @buf = () };
    my $end = $cfg->{start} + $cfg->{seconds};
    sleep 0.001 while now() < $cfg->{start};
    my $max_ops = $cfg->{max_ops} // 5_000_000;
    my $n = 0;
    while (now() < $end && $n < $max_ops) {
        my $bw = $br[ int rand @br ];
        my @plan = plan_step($bw, $cfg, $ci, \$seq, \$nburst);
        my @reqs = map { $_->{req} } @plan;
        $http->exchange(@reqs);
        # answers in arrival order (the jar takes Set-Cookies in that order)
        for my $p (sort { $a->{req}{t1} <=> $b->{req}{t1} } @plan) {
            my $rec = finish_op($p, $json);
            apply_answer($bw, $p, $rec);
            push @buf, MsmLifecycle::encode_json_line($rec);
            $n++;
        }
        after_step($bw, \@plan);
        $flush->() if @buf >= 256;
    }
    $flush->();
    $http->close_all;
    close $out;
    return $n;
}

sub _pick_kind {
    my $mix = shift;
    my $r = rand;
    for my $k (qw(read incr burst login destroy replay cross)) {
        return $k if ($r -= $mix->{$k}) < 0;
    }
    return 'read';
}

our %MIX = (read => 0.35, incr => 0.35, burst => 0.10, login => 0.05, destroy => 0.05,
            replay => 0.07, cross => 0.03);

# the op(s) of one step of browser $bw: list of { op => record, req => request }
sub plan_step {
    my ($bw, $cfg, $ci, $seqr, $nbr) = @_;
    my $mk = sub {
        my ($kind, %o) = @_;
        my $id = "$ci." . ++$$seqr;
        my $op = { type => 'op', id => $id, c => $ci, b => $bw->{i}, kind => $kind,
                   app => $o{app} // 'A', ck => $o{cookie} };
        $op->{burst} = $o{burst} if defined $o{burst};
        my $path = "$APP?op=";
        if ($kind eq 'create') {
            $op->{sid} = "s$ci.$bw->{i}." . ++$bw->{k};
            $op->{w} = $id;
            $path .= "create&sid=$op->{sid}&w=$id";
        }
        elsif ($kind eq 'incr')    { $op->{w} = $id; $path .= "incr&w=$id" }
        elsif ($kind eq 'login')   { $op->{w} = $id; $op->{user} = "u$id"; $path .= "login&user=u$id&w=$id" }
        elsif ($kind eq 'destroy') { $path .= 'destroy' }
        else                       { $path .= 'read' }
        $op->{sid} //= $bw->{sid};
        my $port = $o{port} // $cfg->{port_a};
        $op->{port} = $port;
        return { op => $op, req => { port => $port, path => $path, cookie => $o{cookie} } };
    };
    if (!defined $bw->{sid}) {
        return $mk->('create', cookie => $bw->{jar});
    }
    if (!defined $bw->{jar}) {       # the cookie is gone (cleared): the session is lost for us
        $bw->{sid} = undef;
        return $mk->('create');
    }
    my $kind = _pick_kind($cfg->{mix} || \%MIX);
    if ($kind eq 'burst') {
        my $burst = "$ci.b" . ++$$nbr;
        my $k = 2 + int rand 3;
        my @kinds = map { rand() < 0.5 ? 'read' : 'incr' } 1 .. $k;
        $kinds[ int rand $k ] = rand() < 0.5 ? 'login' : 'destroy' if rand() < 0.25;
        return map { $mk->($_, cookie => $bw->{jar}, burst => $burst) } @kinds;
    }
    if ($kind eq 'replay') {
        return $mk->('read', cookie => $bw->{jar}) unless @{ $bw->{pool} };
        return $mk->('replay', cookie => $bw->{pool}[ int rand @{ $bw->{pool} } ]);
    }
    if ($kind eq 'cross') {
        my $port = $cfg->{cross_port}->($bw->{jar});
        return $mk->('read', cookie => $bw->{jar}) unless $port;
        return $mk->('cross', cookie => $bw->{jar}, app => 'B', port => $port);
    }
    return $mk->($kind, cookie => $bw->{jar});
}

# the record of an answered (or failed) request
sub finish_op {
    my ($p, $json) = @_;
    my ($op, $q) = @{$p}{qw(op req)};
    $op->{t0} = $q->{t0};
    $op->{t1} = $q->{t1};
    $op->{status} = $q->{status};
    $op->{err} = $q->{err} if defined $q->{err};
    $op->{sc} = [ map { parse_set_cookie($_) } @{ $q->{setc} || [] } ];
    if (($q->{status} // 0) == 200) {
        my $d = eval { $json->decode($q->{body} // '') };
        if (ref $d eq 'HASH' && ref $d->{in} eq 'HASH' && ref $d->{out} eq 'HASH') {
            @{$op}{qw(in out dw pid)} = ($d->{in}, $d->{out}, $d->{did_write} ? 1 : 0, $d->{pid});
        }
        else { $op->{err} = 'not the JSON answer: ' . substr($q->{body} // '', 0, 80) }
    }
    return $op;
}

sub _hex_of { my $v = shift; return defined $v && $v =~ /^([0-9a-f]{32})-/ ? $1 : '' }

sub _pool_add {
    my ($bw, $v) = @_;
    return unless defined $v;
    push @{ $bw->{pool} }, $v;
    shift @{ $bw->{pool} } while @{ $bw->{pool} } > 16;
}

# the browser takes one answer: the jar follows the Set-Cookies (not for
# replays and other-vhost requests); the sid follows what the app reported
sub apply_answer {
    my ($bw, $p, $op) = @_;
    my $kind = $op->{kind};
    return if $kind eq 'replay' || $kind eq 'cross';
    for my $sc (@{ $op->{sc} }) {
        my $old = $bw->{jar};
        if ($sc->[1]) { $bw->{jar} = undef; next }
        $bw->{jar} = $sc->[0];
        # the same id on another node / route: the old value is worth a replay
        _pool_add($bw, $old) if defined $old && $old ne $sc->[0] && _hex_of($old) eq _hex_of($sc->[0]);
    }
    my $ack = ($op->{status} // 0) == 200 && ref $op->{in} eq 'HASH';
    return unless $ack;
    my $in_sid = $op->{in}{sid};
    if ($kind eq 'create') {
        if ($op->{dw}) { $bw->{sid} = $op->{sid}; return }
        # nothing written: the cookie sent showed a session
        if (defined $in_sid && !$bw->{dead}{ _hex_of($op->{ck}) }) { $bw->{sid} = $in_sid }
        else { $bw->{jar} = undef }         # forget a dead cookie that shows content
        return;
    }
    if ($kind eq 'destroy') {
        if ($op->{dw}) { $bw->{dead}{ _hex_of($op->{ck}) } = 1; _pool_add($bw, $op->{ck}) }
        $bw->{sid} = undef;
        $p->{ended} = 1;
        return;
    }
    if ($kind eq 'login' && $op->{dw}) {
        my ($new) = grep { !$_->[1] } @{ $op->{sc} };
        if ($new && _hex_of($new->[0]) ne _hex_of($op->{ck})) {
            $bw->{dead}{ _hex_of($op->{ck}) } = 1;
            _pool_add($bw, $op->{ck});
        }
        $p->{ended} = 1;
        return;
    }
    # read / incr / failed login: the session we believe in is not there
    $p->{lost} = 1 if !defined $in_sid || (defined $bw->{sid} && $in_sid ne $bw->{sid});
}

sub after_step {
    my ($bw, $plan) = @_;
    return if grep { $_->{ended} } @$plan;       # a destroy/login settled it
    $bw->{sid} = undef if grep { $_->{lost} } @$plan;
}

# ================================================================ environment

our %PORTS = (
    nonsticky => { mc => [21501, 21502, 21503], httpd => 21510, b => 21511 },
    locking   => { mc => [21521, 21522, 21523], httpd => 21530, b => 21531 },
    sticky    => { mc => [21541, 21542, 21543], mc_b => [21544, 21545, 21546],
                   a => 21550, a_b => 21551, b => 21552, b_b => 21553, front => 21555 },
);

sub _lua_conf {
    return <<"EOF";
<IfModule !lua_module>
    LoadModule lua_module "$LUA_SO"
</IfModule>
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 30
<Directory "\@T\@/htdocs/lc">
    SetHandler lua-script
    LuaScope server 1 64
    Require all granted
</Directory>
EOF
}

sub _app_location {
    my (%o) = @_;
    my $lock = $o{locking} ? "\n    MsmLocking On\n    MsmLockTimeout 10000" : '';
    return <<"EOF";
<Location /lc/>
    Session On
    SessionEnv On
    SessionHeader X-Replace-Session
    MsmCookieName $COOKIE path=/ httponly$lock
</Location>
EOF
}

my $PREFORK_BIG = <<'EOF';
# prefork: every keep-alive connection of the clients holds a child (8 clients x
# up to 5 pooled connections); children forked on demand come at most a few per
# second, so they are all there from the start
<IfModule mpm_prefork_module>
    StartServers            56
    MinSpareServers         24
    MaxSpareServers         96
    ServerLimit             96
    MaxRequestWorkers       96
    MaxConnectionsPerChild  0
</IfModule>
EOF

sub _nodes {
    my ($prefix, @ports) = @_;
    return join ' ', map { "$prefix" . ($_ + 1) . ":127.0.0.1:$ports[$_]" } 0 .. $#ports;
}

# starts what a mode needs; returns the environment
sub setup {
    my ($mode) = @_;
    my $P = $PORTS{$mode} or croak "unknown lifecycle mode '$mode' (nonsticky, locking, sticky)";
    my %env = (mode => $mode, mc => {}, httpd => {}, mc_b => []);
    if ($mode eq 'nonsticky' || $mode eq 'locking') {
        my $locking = $mode eq 'locking';
        my @ids = map { "n$_" } 1 .. 3;
        $env{mc}{ $ids[$_] } = MsmTest::memcached(port => $P->{mc}[$_]) for 0 .. 2;
        my $nodes = _nodes('n', @{ $P->{mc} });
        my $conf = _lua_conf() . $PREFORK_BIG . <<"EOF" . _app_location(locking => $locking) . <<"EOF2";
MsmNodes $nodes
MsmOperationTimeout 300
MsmNodeRetry 1
MsmKeyPrefix lcA:
<Location /msm-status>
    SetHandler msm-status
</Location>
EOF
Listen 127.0.0.1:$P->{b}
<VirtualHost 127.0.0.1:$P->{b}>
    MsmNodes $nodes
    MsmKeyPrefix lcB:
@{[ _app_location(locking => $locking) =~ s/^/    /mgr ]}</VirtualHost>
EOF2
        my $h = MsmTest::httpd(port => $P->{httpd}, name => "lc-$mode", conf => $conf,
                               mpm => $locking ? 'event' : 'prefork', servers => $locking ? 2 : 12,
                               threads => 32, timeout => 30);
        $env{httpd}{main} = $h;
        $env{port_a} = $P->{httpd};
        $env{cross_port} = $P->{b};
        $env{locking} = $locking;
        $env{graceful} = ['main'];
        $env{faults} = [qw(mc_kill9 mc_stop httpd_graceful)];
        $env{bag} = { mc_kill9 => 2, mc_stop => 2, httpd_graceful => 1 };
    }
    elsif ($mode eq 'sticky') {
        my @ids = map { "m$_" } 1 .. 3;
        $env{mc}{ $ids[$_] } = MsmTest::memcached(port => $P->{mc}[$_]) for 0 .. 2;
        $env{mc_b} = [ map { MsmTest::memcached(port => $_) } @{ $P->{mc_b} } ];
        my $nodes = _nodes('m', @{ $P->{mc} });
        my $nodes_b = _nodes('m', @{ $P->{mc_b} });
        for my $route (qw(a b)) {
            my $bport = $P->{"${route}_b"};
            my $conf = _lua_conf() . $PREFORK_BIG . <<"EOF" . _app_location() . <<"EOF2";
MsmNodes $nodes
MsmOperationTimeout 300
MsmNodeRetry 1
MsmKeyPrefix lcS:
MsmSticky On
MsmRoute $route
Header always set X-Backend "$route"
EOF
Listen 127.0.0.1:$bport
<VirtualHost 127.0.0.1:$bport>
    MsmNodes $nodes_b
    MsmKeyPrefix lcS:
    MsmSticky On
    MsmRoute $route
@{[ _app_location() =~ s/^/    /mgr ]}</VirtualHost>
EOF2
            $env{httpd}{$route} = MsmTest::httpd(port => $P->{$route}, name => "lc-sticky-$route",
                conf => $conf, mpm => $route eq 'a' ? 'prefork' : 'event',
                servers => $route eq 'a' ? 12 : 2, threads => 32, timeout => 30);
        }
        my $m = join '', map {
            "    BalancerMember \"http://127.0.0.1:$P->{$_}\" route=$_ retry=1 disablereuse=On\n"
        } qw(a b);
        $env{httpd}{front} = MsmTest::httpd(port => $P->{front}, name => 'lc-sticky-front', msm => 0,
            servers => 12, timeout => 30, conf => $PREFORK_BIG . <<"EOF");
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 30
<Proxy "balancer://lc">
$m    ProxySet stickysession=$COOKIE lbmethod=byrequests
</Proxy>
ProxyPass        "/lc/" "balancer://lc/lc/"
ProxyPassReverse "/lc/" "balancer://lc/lc/"
EOF
        $env{port_a} = $P->{front};
        $env{cross_by_route} = { a => $P->{a_b}, b => $P->{b_b} };
        $env{locking} = 0;
        $env{graceful} = [qw(front a b)];
        $env{backends} = [qw(a b)];
        $env{faults} = [qw(mc_kill9 mc_stop httpd_graceful backend_kill9)];
        $env{bag} = { mc_kill9 => 2, mc_stop => 1, httpd_graceful => 1, backend_kill9 => 2 };
    }
    return \%env;
}

sub teardown {
    my $env = shift;
    for my $h (values %{ $env->{httpd} }) { eval { $h->stop } }
    for my $mc (values %{ $env->{mc} }, @{ $env->{mc_b} }) { eval { $mc->sigcont; $mc->stop } }
}

# one request through the app, bounded; true when a session round trip works
sub wait_ready {
    my ($env, %o) = @_;
    my $http = MsmLifecycleRun::Http->new(timeout => 5);
    my $ok = MsmTest::wait_until(sub {
        my ($q) = $http->exchange({ port => $env->{port_a}, path => "$APP?op=create&sid=ready&w=r0" });
        return 0 unless ($q->{status} // 0) == 200;
        my ($v) = map { $_->[0] } grep { !$_->[1] } map { parse_set_cookie($_) } @{ $q->{setc} };
        return 0 unless $v;
        my ($r) = $http->exchange({ port => $env->{port_a}, path => "$APP?op=read", cookie => $v });
        return 0 unless ($r->{body} // '') =~ /"sid":"ready"/;
        $http->exchange({ port => $env->{port_a}, path => "$APP?op=destroy", cookie => $v });
        return 1;
    }, timeout => $o{timeout} // 20, interval => 0.2);
    $http->close_all;
    return $ok;
}

# ================================================================ nemesis

# all descendants of $pid from one pass over /proc
sub descendants {
    my $root = shift;
    my %kids;
    opendir my $dh, '/proc' or return;
    for my $p (grep { /^\d+$/ } readdir $dh) {
        open my $fh, '<', "/proc/$p/stat" or next;
        my $st = <$fh> // '';
        close $fh;
        push @{ $kids{$1} }, $p + 0 if $st =~ /\)\s+\S+\s+(\d+)/;
    }
    closedir $dh;
    my @all;
    my @todo = ($root);
    while (@todo && @all < 10000) {
        my $p = shift @todo;
        push @all, @{ $kids{$p} || [] };
        push @todo, @{ $kids{$p} || [] };
    }
    return @all;
}

# the state letter of /proc/PID/stat ('' when gone)
sub _state {
    my $pid = shift;
    open my $fh, '<', "/proc/$pid/stat" or return '';
    my $st = <$fh> // '';
    close $fh;
    return $st =~ /\)\s+(\S)/ ? $1 : '';
}

# alive and not a zombie
sub _running { return _state(shift) !~ /^[ZX]?$/ }

# an HTTP status line from 127.0.0.1:$port (bounded)
sub _answers {
    my $port = shift;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp',
                                  Timeout => 1) or return 0;
    syswrite($s, "HEAD / HTTP/1.0\r\n\r\n");
    my ($buf, $sel) = ('', IO::Select->new($s));
    return 0 unless $sel->can_read(2) && sysread($s, $buf, 64);
    return $buf =~ m{^HTTP/};
}

sub _shuffle {
    my @a = @_;
    for (my $i = @a - 1; $i > 0; $i--) { my $j = int rand($i + 1); @a[$i, $j] = @a[$j, $i] }
    return @a;
}

# one bounded fault; returns its record
sub inject {
    my ($env, $kind) = @_;
    my $f = { type => 'fault', kind => $kind };
    if ($kind eq 'mc_kill9') {
        my @ids = sort keys %{ $env->{mc} };
        my $id = $ids[ int rand @ids ];
        my $mc = $env->{mc}{$id};
        my $down = 0.3 + rand 1.2;
        $f->{target} = $id;
        $f->{t0} = now();
        $mc->kill9;
        sleep $down;
        eval { $mc->restart; 1 } or do { $f->{error} = "restart: $@"; sleep 0.5; eval { $mc->restart } };
        $f->{t1} = now();
    }
    elsif ($kind eq 'mc_stop') {
        my @ids = sort keys %{ $env->{mc} };
        my $id = $ids[ int rand @ids ];
        my $mc = $env->{mc}{$id};
        $f->{target} = $id;
        $f->{t0} = now();
        $mc->sigstop;
        sleep 1;
        $mc->sigcont;
        $f->{t1} = now();
    }
    elsif ($kind eq 'httpd_graceful') {
        my @n = @{ $env->{graceful} };
        my $name = $n[ int rand @n ];
        $f->{target} = $name;
        $f->{t0} = now();
        $env->{httpd}{$name}->graceful;
        sleep 0.3;
        $f->{error} = "$name died in its graceful restart" unless $env->{httpd}{$name}->running;
        $f->{t1} = now();
    }
    elsif ($kind eq 'backend_kill9') {
        my @n = @{ $env->{backends} };
        my $name = $n[ int rand @n ];
        my $h = $env->{httpd}{$name};
        my $down = 0.5 + rand 0.5;
        $f->{target} = $name;
        my $pid = $h->pid or croak "back end $name is not running";
        $f->{t0} = now();
        # stopped first, the parent forks no child between the list and the
        # kill: one that escaped would go on serving from the killed
        # server's tier, reparented to init (seen: resurrections by such a child)
        kill 'STOP', $pid;
        MsmTest::wait_until(sub { _state($pid) =~ /^[TtZX]?$/ }, timeout => 2, interval => 0.001);
        my @desc = descendants($pid);
        kill 'KILL', $pid, @desc;          # parent and children, by pid
        # gone: the parent reaped, the children too (bounded), the port closed
        MsmTest::wait_until(sub { my $r = waitpid($pid, POSIX::WNOHANG()); $r == $pid || $r == -1 },
                            timeout => 5, interval => 0.01);
        MsmTest::wait_until(sub { !grep { _running($_) } @desc }, timeout => 5, interval => 0.01);
        MsmTest::wait_until(sub { !MsmTest::port_open($h->port, 0.1) }, timeout => 3, interval => 0.01)
            or croak "back end $name: its port is still open after kill -9 (a process escaped)";
        delete $h->{pid};
        sleep 0.001 while now() < $f->{t0} + $down;
        eval { $h->respawn; 1 } or do { $f->{error} = "respawn: $@"; sleep 1; eval { $h->respawn } };
        # an open port is not enough: until its MPM runs, httpd has no SIGUSR1
        # handler, and a graceful restart right after the respawn ended it
        # (seen: a back end gone for 33 s, then 994 answers 503 while the
        # other one was killed)
        MsmTest::wait_until(sub { _answers($h->port) }, timeout => 10, interval => 0.05)
            or $f->{error} //= "back end $name does not answer after its respawn";
        $f->{t1} = now();
    }
    else { croak "unknown fault $kind" }
    return $f;
}

# ================================================================ one mode

sub lifecycle_dir {
    my $d = catdir(MsmTest::logs_dir(), 'lifecycle');
    make_path($d) unless -d $d;
    return $d;
}

# run_mode($mode, seconds => 30, clients => 8, browsers => 3, seed => 1,
#          loss_window => 1.0, faults => 1 (0: no nemesis), verbose => 0,
#          log => sub { diag(...) })
sub run_mode {
    my ($mode, %p) = @_;
    my $seconds  = $p{seconds}  // 30;
    my $clients  = $p{clients}  // 8;
    my $browsers = $p{browsers} // 3;
    my $seed     = $p{seed}     // 1;
    my $log      = $p{log} || sub { };
    local $SIG{PIPE} = 'IGNORE';
    my $dir = catdir(lifecycle_dir(), $mode);
    make_path($dir);
    unlink glob(catfile($dir, '*.jsonl'));

    my $env = setup($mode);
    my $ok = wait_ready($env);
    if (!$ok) {
        teardown($env);
        croak "lifecycle $mode: the app does not answer a session round trip (see t/tmp/httpd-lc-*/logs)";
    }
    srand($seed);
    my $start = now() + 0.5;
    my %cfg = (mode => $mode, port_a => $env->{port_a}, seconds => $seconds, browsers => $browsers,
               seed => $seed, start => $start, timeout => $env->{locking} ? 25 : 15,
               max_ops => $p{max_ops});
    if ($env->{cross_by_route}) {
        my $map = $env->{cross_by_route};
        $cfg{cross_port} = sub { my ($h, $n, $r) = MsmLifecycle::parse_cookie($_[0]); return $r ? $map->{$r} : undef };
    }
    else {
        my $port = $env->{cross_port};
        $cfg{cross_port} = sub { defined $_[0] ? $port : undef };
    }
    my @kids;
    for my $ci (1 .. $clients) {
        my $file = catfile($dir, "client-$ci.jsonl");
        my $pid = fork;
        croak "fork: $!" unless defined $pid;
        if (!$pid) {
            my $rc = eval { client_main({ %cfg, ci => $ci, file => $file }); 0 } // do {
                warn "lifecycle client $ci: $@"; 1 };
            POSIX::_exit($rc);
        }
        push @kids, $pid;
    }

    # the nemesis: one fault at a time, every 1.5-3 s, all healed before the end
    my @faults;
    my $end = $start + $seconds;
    sleep 0.01 while now() < $start;
    my $max_fault = 2.5;        # longest fault (kill -9 + restart of an httpd)
    my $next = $start + 1.5 + rand 1.5;
    my @bag;
    for my $nf (1 .. ($p{faults} // 1 ? 100_000 : 0)) {
        # the next fault starts 1.5-3 s after the previous one started, and
        # at least 0.2 s after it healed
        last if $next + $max_fault > $end;
        sleep 0.005 while now() < $next;
        # a seeded shuffled bag of fault kinds (with the weights as multiplicities):
        # every kind comes within each round of the bag, also in a short run
        @bag = _shuffle(map { ($_) x $env->{bag}{$_} } sort keys %{ $env->{bag} }) unless @bag;
        my $kind = shift @bag;
        my $f = eval { inject($env, $kind) } || { type => 'fault', kind => $kind, t0 => now(),
                                                 t1 => now(), error => "$@" };
        push @faults, $f;
        $next = $f->{t0} + 1.5 + rand 1.5;
        $next = $f->{t1} + 0.2 if $next < $f->{t1} + 0.2;
        $log->(sprintf '%s: fault %-14s %-6s +%.2f..+%.2f%s', $mode, $f->{kind}, $f->{target} // '',
               $f->{t0} - $start, $f->{t1} - $start, $f->{error} ? " ($f->{error})" : '')
            if $p{verbose};
    }

    # clients end by themselves at $end; bounded wait, then SIGKILL by pid
    my $limit = $end + ($env->{locking} ? 40 : 25);
    my %left = map { $_ => 1 } @kids;
    my %rc;
    while (%left && now() < $limit) {
        for my $pid (keys %left) {
            my $r = waitpid($pid, POSIX::WNOHANG());
            if ($r == $pid || $r == -1) { $rc{$pid} = $? >> 8; delete $left{$pid} }
        }
        sleep 0.05 if %left;
    }
    for my $pid (keys %left) { kill 'KILL', $pid; waitpid($pid, 0); $rc{$pid} = 'killed' }
    my @client_errors = grep { $rc{$_} } keys %rc;

    my %counters;
    for my $name (sort keys %{ $env->{httpd} }) {
        next if $name eq 'front';
        my $c = eval {
            my $http = MsmLifecycleRun::Http->new(timeout => 5);
            my ($q) = $http->exchange({ port => $env->{httpd}{$name}->port, path => '/msm-status' });
            _json()->decode($q->{body})->{counters};
        };
        $counters{$name} = $c if ref $c eq 'HASH';
    }
    teardown($env);

    # merge
    my @recs;
    for my $ci (1 .. $clients) {
        my $file = catfile($dir, "client-$ci.jsonl");
        push @recs, @{ MsmLifecycle::read_history($file) } if -e $file;
    }
    push @recs, @faults;
    @recs = sort { $a->{t0} <=> $b->{t0} } @recs;
    my $params = { locking => $env->{locking} ? 1 : 0, backup_async => 1,
                   loss_window => $p{loss_window} // 1.0 };
    my $meta = { type => 'meta', mode => $mode, seed => $seed, seconds => $seconds, clients => $clients,
                 browsers => $browsers, start => $start, t0 => $start, %$params,
                 client_errors => scalar @client_errors, msm_counters => \%counters };
    unshift @recs, $meta;
    my $file = catfile(lifecycle_dir(), "$mode.jsonl");
    MsmLifecycle::write_history($file, \@recs);
    return { records => \@recs, file => $file, params => $params, meta => $meta,
             client_errors => \@client_errors };
}

1;
