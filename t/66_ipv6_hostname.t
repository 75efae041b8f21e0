# Nodes given as an IPv6 address and as a host name (README "Directives",
# MsmNodes: "IPv6: id:[::1]:11211. Host names are resolved at start-up."):
# an extra httpd with MsmNodes s6:[::1]:21465 lh:localhost:21466. memcached s6
# listens on ::1 (and 127.0.0.1, where the test reads it), lh on 127.0.0.1 (and
# ::1, whichever localhost resolves to). Sessions with their primary on each
# node: create, read, update, destroy; each copy is in the memcached its cookie
# names and its backup on the other; mod_msm's connections to s6 arrive on its
# ::1 listener (memcached "stats conns"); msm-status names both nodes live.
# Skipped only when this machine has no ::1.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use IO::Socket::IP ();

my $has_v6 = do {
    my $l = IO::Socket::IP->new(LocalHost => '::1', LocalPort => 0, Listen => 1, Proto => 'tcp');
    $l ? 1 : 0;
};
plan tests => 22, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm(),
                         'no IPv6 loopback (::1) on this machine' => $has_v6 };

my %mc = (s6 => MsmTest::memcached(port => 21465, args => ['-l', '[::1]']),
          lh => MsmTest::memcached(port => 21466, args => ['-l', '[::1]']));
my %other = (s6 => 'lh', lh => 's6');
my $h = MsmTest::httpd(port => 21467, name => 't66',
                       conf => MsmTest::app_conf('s6:[::1]:21465 lh:localhost:21466', 'v66:'));
my $base = $h->url;

my $st = MsmTest::msm_status(base => $base) || {};
my %node = map { ($_->{id} // '') => $_ } @{ $st->{nodes} || [] };
diag('msm-status nodes: ' . join(', ', map { "$_ $node{$_}{address}" } sort keys %node));
ok($node{s6} && $node{s6}{address} eq '[::1]:21465' && $node{s6}{live}, 'msm-status: s6 at [::1]:21465, live');
ok($node{lh} && $node{lh}{address} =~ /:21466$/ && $node{lh}{live}, 'msm-status: lh (localhost:21466), live');

sub copy_of { my ($n, $sid) = @_; return $mc{$n}->copy($sid, 'v66:') || {} }

for my $n (qw(s6 lh)) {
    my $o = $other{$n};
    my ($c, $sid) = MsmTest::session_on($base, $n, "on-$n");
    is(MsmTest::cookie_node($sid) // '', $n, "$n: a session with its primary on $n ($sid)");
    my $p = copy_of($n, $sid);
    ok(($p->{kind} // '') eq 'S' && ($p->{primary} // '') eq $n && ($p->{payload} // '') eq "data=on-$n",
       "$n: its copy is in $n\'s memcached, naming $n");
    ok(MsmTest::wait_until(sub { (copy_of($o, $sid)->{primary} // '') eq $n }, timeout => 5),
       "$n: its backup is in $o\'s memcached");
    is_deeply($c->get('/msm/app.cgi?op=read')->session, { data => "on-$n" }, "$n: read back");
    my $r = $c->get("/msm/app.cgi?op=set&k=data&v=upd-$n");
    ok($r->status == 200 && (copy_of($n, $sid)->{payload} // '') eq "data=upd-$n", "$n: update stored on $n");
    ok(MsmTest::wait_until(sub { (copy_of($o, $sid)->{payload} // '') eq "data=upd-$n" }, timeout => 5),
       "$n: ... and on its backup");
    $r = $c->get('/msm/app.cgi?op=destroy');
    ok($r->status == 200 && !defined $c->cookie('MSMSESSION'), "$n: destroy clears the cookie");
    ok(MsmTest::wait_until(sub { !grep { (copy_of($_, $sid)->{kind} // '') ne 'D' } $n, $o }, timeout => 5),
       "$n: tombstones on both nodes");
}

# mod_msm's connections (kept by the children between requests) to s6 came
# through its ::1 listener: "stats conns" gives each connection's listen_addr
my %lsn;
for (grep { /:listen_addr / } $mc{s6}->raw('stats conns')) { $lsn{$1}++ if /listen_addr (\S+)/ }
diag('s6 connections by listener: ' . join(', ', map { "$_ x$lsn{$_}" } sort keys %lsn));
ok(grep({ /^tcp6:\[::1\]:21465$/ } keys %lsn), "s6: mod_msm's connections arrive on [::1]:21465");
ok(!grep({ !/^tcp6:/ && !/^tcp:127\.0\.0\.1:21465$/ } keys %lsn), 's6: no connection on any other listener');
my @err = grep { ($_->{errors} // 0) > 0 } map { MsmTest::status_node($base, $_) || { errors => 99 } } qw(s6 lh);
is(scalar @err, 0, 'msm-status: no node error on either node');
unlike(MsmTest::log_since([$h->error_log, 0]), qr/MSM00101|exit signal|Segmentation/, 'no node down, no crash');
