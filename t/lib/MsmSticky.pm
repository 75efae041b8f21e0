package MsmSticky;
# Shared set-up of the sticky-mode tests (t/40-43): three memcached nodes
# m1-m3, back ends with MsmSticky On and a route, a mod_proxy_balancer front
# with stickysession=MSMSESSION. Built on MsmTest (real memcached, real httpd).
#
#   use MsmSticky;
#   my @mc = MsmSticky::memcacheds();                   # m1..m3 on 21360-21362
#   my $a  = MsmSticky::backend('a');                   # sticky, route a, port 21363
#   my $b  = MsmSticky::backend('b');                   # sticky, route b, port 21364
#   my $x  = MsmSticky::backend('x', sticky => 0, port => 21366);   # non-sticky
#   my $f  = MsmSticky::front(a => $a, b => $b);        # balancer on 21365
#   MsmSticky::wait_ready($url)                         # a session round trip works
#   my $ops = MsmSticky::mc_ops(\@mc);                  # {get, touch, set, delete, total}
#                                    (not counted: the once-a-second read of the published
#                                    node failures, t:msm-failures; see MsmTest::mc_ops)
#   my $d   = MsmSticky::ops_delta($before, $after);
#   MsmSticky::mc_session(\@mc, $cookie [, backup => 1]) # {k => v} of the copy on the cookie's node
#                                    (or the next one), naming that node as primary (a get)
#   MsmSticky::cookie_parts($cookie)                    # (hex, node, route)
#   MsmSticky::wait_sets(\@mc, $base, $n)               # waits (bounded) for $n sets since $base
#   MsmSticky::counters($httpd)                         # its msm-status counters (hashref)
#
# Ports (this issue's range 21360-21379): memcached 21360-21362, back ends
# a=21363 b=21364, front 21365, extra back end 21366.
use strict;
use warnings;

use Carp qw(croak);
use MsmTest;
use Time::HiRes qw(time sleep);

our @MC_PORTS = (21360, 21361, 21362);
our %BACKEND_PORT = (a => 21363, b => 21364);
our $FRONT_PORT = 21365;
our $COOKIE_RE = qr/^([0-9a-f]{32})-(m[123])(?:\.([A-Za-z0-9_]+))?$/;

sub memcacheds {
    return map { MsmTest::memcached(port => $_) } @MC_PORTS;
}

sub node_port {
    my $node = shift;
    my ($i) = $node =~ /^m([123])$/ or croak "unknown node '$node'";
    return $MC_PORTS[$i - 1];
}

# backend($route, sticky => 1, port => N, servers => 4, name => ...)
sub backend {
    my ($route, %o) = @_;
    my $sticky = $o{sticky} // 1;
    my $port = $o{port} // $BACKEND_PORT{$route} // croak "port for backend '$route'";
    my $nodes = join ' ', map { 'm' . ($_ + 1) . ":127.0.0.1:$MC_PORTS[$_]" } 0 .. $#MC_PORTS;
    my $mode = $sticky ? "MsmSticky On\nMsmRoute $route" : "MsmSticky Off";
    my $conf = <<"EOF";
MsmNodes $nodes
MsmKeyPrefix t:
MsmOperationTimeout 500
MsmNodeRetry 1
$mode
<Location /msm/>
    \@APP_SESSION\@
</Location>
<Location /msm-status>
    SetHandler msm-status
</Location>
Header always set X-Backend "$route"
EOF
    return MsmTest::httpd(port => $port, name => $o{name} // "sticky-$route",
                          servers => $o{servers} // 4, conf => $conf);
}

# front(a => $httpd_a, b => $httpd_b [, port => N, servers => 4])
# disablereuse=On: a new back-end connection per request, so that after a back
# end dies a request meets "connection refused" and fails over, instead of a
# 502 from a pooled connection whose reset arrived after mod_proxy's liveness
# check (a mod_proxy race, not mod_msm's; seen under load in t/41).
sub front {
    my (%members) = @_;
    my $port = delete $members{port} // $FRONT_PORT;
    my $servers = delete $members{servers} // 4;
    my $m = join '', map {
        "    BalancerMember \"http://127.0.0.1:" . $members{$_}->port . "\" route=$_ retry=1 disablereuse=On\n"
    } sort keys %members;
    return MsmTest::httpd(port => $port, name => 'sticky-front', msm => 0,
                          servers => $servers, conf => <<"EOF");
<Proxy "balancer://sticky">
$m    ProxySet stickysession=MSMSESSION lbmethod=byrequests
</Proxy>
ProxyPass        "/msm/" "balancer://sticky/msm/"
ProxyPassReverse "/msm/" "balancer://sticky/msm/"
EOF
}

# bounded: until a new session can be written and read back through $url
# (memcached nodes reachable, dead marks of earlier runs expired)
sub wait_ready {
    my ($url, %o) = @_;
    my $ok = MsmTest::wait_until(sub {
        my $c = MsmTest::client(base => $url, timeout => 5);
        my $r = $c->get('/msm/app.cgi?op=set&k=ready&v=1');
        return 0 unless $r->status == 200 && $c->cookie('MSMSESSION');
        my $r2 = $c->get('/msm/app.cgi?op=read');
        return 0 unless ($r2->session // {})->{ready};
        $c->get('/msm/app.cgi?op=destroy');
        return 1;
    }, timeout => $o{timeout} // 10, interval => 0.2);
    return $ok;
}

# memcached operation counters summed over @$mcs
sub mc_ops {
    my $mcs = shift;
    my %t = (get => 0, touch => 0, set => 0, delete => 0, cas => 0);
    for my $mc (@$mcs) {
        my $s = $mc->stats;
        my $f = eval { $mc->failure_ops } || { get => 0, set => 0 };
        $t{get}    += ($s->{cmd_get} // 0) - $f->{get};
        $t{touch}  += $s->{cmd_touch} // 0;
        $t{set}    += ($s->{cmd_set} // 0) - $f->{set};
        $t{delete} += ($s->{delete_hits} // 0) + ($s->{delete_misses} // 0);
        $t{cas}    += ($s->{cas_hits} // 0) + ($s->{cas_misses} // 0) + ($s->{cas_badval} // 0);
    }
    $t{total} = $t{get} + $t{touch} + $t{set} + $t{delete};
    return \%t;
}

sub ops_delta {
    my ($x, $y) = @_;
    return { map { $_ => $y->{$_} - $x->{$_} } keys %$y };
}

sub fmt_ops {
    my $d = shift;
    return join ' ', map { "$_=$d->{$_}" } qw(get touch set delete total);
}

# waits (bounded) until at least $n sets happened since $base; returns the delta then
sub wait_sets {
    my ($mcs, $base, $n, %o) = @_;
    my $d;
    MsmTest::wait_until(sub {
        $d = ops_delta($base, mc_ops($mcs));
        return $d->{set} >= $n;
    }, timeout => $o{timeout} // 5, interval => 0.05);
    return $d;
}

sub cookie_parts {
    my $v = shift // '';
    my @p = $v =~ $COOKIE_RE;
    return @p;
}

# mod_session's encoded string -> {k => v} (expiry left out)
sub decode {
    my $s = shift;
    return undef unless defined $s;
    my %h;
    for my $pair (split /&/, $s) {
        next unless length $pair;
        my ($k, $v) = split /=/, $pair, 2;
        for ($k, $v) { next unless defined; tr/+/ /; s/%([0-9A-Fa-f]{2})/chr hex $1/ge }
        $h{$k} = $v // '';
    }
    delete $h{expiry};
    return \%h;
}

# what memcached holds as the primary copy of the session named by $cookie: the
# copy under t:<hex> on the cookie's node, naming that node as its primary (counts
# one get on that node) - undef when missing (or a tombstone, or naming another node).
# backup => 1: the copy on the next node, which names the cookie's node too.
sub mc_session {
    my ($mcs, $cookie, %o) = @_;
    my ($hex, $node) = cookie_parts($cookie) or return undef;
    my ($mc) = grep { $_->port == node_port($node) } @$mcs;
    if ($o{backup}) {
        # the backup lives on the next node after the primary (all nodes live here)
        my @order = map { node_port($_) } qw(m1 m2 m3);
        my ($i) = grep { $order[$_] == node_port($node) } 0 .. 2;
        my $bp = $order[($i + 1) % 3];
        ($mc) = grep { $_->port == $bp } @$mcs;
    }
    my $c = $mc->copy($hex) or return undef;
    return undef unless $c->{kind} eq 'S' && ($c->{primary} // '') eq $node;
    return decode($c->{payload});
}

# the msm-status counters of an extra httpd ({} when unreadable)
sub counters {
    my $h = shift;
    my $r = MsmTest::client(base => $h->url, timeout => 5)->get('/msm-status');
    my $j = $r->json;
    return ref $j eq 'HASH' && ref $j->{counters} eq 'HASH' ? $j->{counters} : {};
}

sub median {
    my @v = sort { $a <=> $b } @_;
    return undef unless @v;
    return @v % 2 ? $v[$#v / 2] : ($v[@v / 2 - 1] + $v[@v / 2]) / 2;
}

1;
