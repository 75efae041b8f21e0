# Smoke test of mod_msm through the test app: a session is created, stored in
# memcached under <prefix><32 hex> as a copy "MSM1 S ... <primary node>\n<payload>"
# on the node its cookie <32 hex>-<nodeId> names, read back, updated, destroyed (a
# tombstone "MSM1 D" replaces it); the second vhost uses its own nodes. Skipped when the suite runs without mod_msm
# (scripts/test.sh --no-module).
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;

plan tests => 25, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my %node = (n1 => 21301, n2 => 21302, n3 => 21303, v1 => 21311, v2 => 21312);
my %mc = map { $_ => MsmTest::memcached(port => $node{$_}) } keys %node;
my $ID = qr/^([0-9a-f]{32})-(n[123])$/;

my $c = MsmTest::client();
my $r = $c->get('/msm/app.cgi?op=read');
is($r->status, 200, 'read without a session') or diag($r->dump);
# scripts/test.sh --fpm: the app must really run in php-fpm (through
# mod_proxy_fcgi), else in mod_cgi
my $app = $ENV{MSM_TEST_FPM_SOCKET} ? 'php-fpm' : 'cgi';
is($r->field('app'), $app, "the test application runs as $app");
is_deeply($r->session, {}, 'empty session');
ok(!defined $r->cookie('MSMSESSION'), 'no session, no cookie');

$r = $c->get('/msm/app.cgi?op=set&k=user&v=alice');
is($r->status, 200, 'set') or diag($r->dump);
my $sid = $r->cookie('MSMSESSION') // '';
like($sid // '', $ID, 'Set-Cookie MSMSESSION=<32 hex>-<node>');
my ($sc) = grep { /^MSMSESSION=/ } $r->set_cookies;
like($sc // '', qr/;\s*path=\//i, 'cookie has path=/');
like($sc // '', qr/;\s*httponly/i, 'cookie is HttpOnly');
my ($hex, $nid) = ($sid // '') =~ $ID;
$nid //= 'n1';
my $owner = $mc{$nid};
my $key = MsmTest::session_key($sid);
my $copy = $owner->copy($sid);
ok($copy && $copy->{kind} eq 'S' && $copy->{primary} eq $nid,
   "key $key is on its node $nid, a session copy naming $nid as primary")
    or diag('keys: ' . join(' ', map { "$_=[" . join(',', $mc{$_}->keys) . ']' } sort keys %mc));
# the other nodes may hold the backup (the same key, naming $nid as primary)
ok(!(grep { my $o = $mc{$_}->copy($sid); $o && ($o->{primary} // '') ne $nid } grep { $_ ne $nid } qw(n1 n2 n3 v1 v2)),
   'key not on other nodes as primary');
like($copy ? $copy->{payload} : '', qr/user=alice/, 'stored value holds user=alice');

$r = $c->get('/msm/app.cgi?op=read');
is_deeply($r->session, { user => 'alice' }, 'read back from memcached');
is($c->get('/msm/app.cgi?op=incr&k=n')->field('value'), 1, 'incr -> 1');
is($c->get('/msm/app.cgi?op=incr&k=n')->field('value'), 2, 'incr -> 2');
is_deeply($c->get('/msm/app.cgi?op=read')->session, { user => 'alice', n => 2 },
          'both keys');
is($c->cookie('MSMSESSION'), $sid, 'session id unchanged by updates');

my $c2 = MsmTest::client();
is_deeply($c2->get('/msm/app.cgi?op=read')->session, {}, 'another client: no session');
$c2->cookie(MSMSESSION => ('0' x 32) . '-n1');
$r = $c2->get('/msm/app.cgi?op=read');
is($r->status, 200, 'unknown session id: 200');
is_deeply($r->session, {}, 'unknown session id: empty session');

$r = $c->get('/msm/app.cgi?op=destroy');
is($r->status, 200, 'destroy');
is_deeply($c->get('/msm/app.cgi?op=read')->session, {}, 'after destroy: empty');
# no delete any more: a tombstone replaces the session (before the response)
ok(MsmTest::wait_until(sub { (($owner->copy($sid) || {})->{kind} // '') eq 'D' }, timeout => 3),
   'after destroy: the session is gone from memcached (a tombstone replaced it)');

# second vhost: its own nodes v1/v2
my $cv = MsmTest::client(vhost => 'msm_vhost2');
$r = $cv->get('/msm/app.cgi?op=set&k=x&v=1');
my $vsid = $r->cookie('MSMSESSION') // '';
like($vsid, qr/^[0-9a-f]{32}-v[12]$/, "vhost2: id names one of its nodes ($vsid)");
my ($vn) = $vsid =~ /-(v[12])$/;
ok($vn && (($mc{$vn}->copy($vsid) || {})->{primary} // '') eq $vn, 'vhost2: key on its node');
is_deeply($cv->get('/msm/app.cgi?op=read')->session, { x => 1 }, 'vhost2: read back');
