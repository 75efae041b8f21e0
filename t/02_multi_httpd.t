# Two extra httpd instances (MsmTest::httpd) sharing the same memcached nodes,
# behind a mod_proxy_balancer front: a session follows the user whichever
# backend serves it, and survives the loss of a backend.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;

plan tests => 12, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my %mc = map { $_ => MsmTest::memcached(port => $_) } 21301, 21302, 21303;

my $backend_conf = <<'EOF';
MsmNodes n1:127.0.0.1:21301 n2:127.0.0.1:21302 n3:127.0.0.1:21303
MsmKeyPrefix t:
MsmOperationTimeout 500
MsmNodeRetry 1
<Location /msm/>
    @APP_SESSION@
</Location>
Header always set X-Backend "@PORT@"
EOF

my $b1 = MsmTest::httpd(port => 21352, name => 'b1', conf => $backend_conf);
my $b2 = MsmTest::httpd(port => 21353, name => 'b2', conf => $backend_conf);
my $front = MsmTest::httpd(port => 21351, name => 'front', msm => 0, conf => <<'EOF');
<Proxy "balancer://backends">
    BalancerMember "http://127.0.0.1:21352"
    BalancerMember "http://127.0.0.1:21353"
    ProxySet lbmethod=byrequests
</Proxy>
ProxyPass        "/msm/" "balancer://backends/msm/"
ProxyPassReverse "/msm/" "balancer://backends/msm/"
EOF

my $c = MsmTest::client(base => $front->url);
my (@values, %backends, %codes);
for (1 .. 10) {
    my $r = $c->get('/msm/app.cgi?op=incr&k=n');
    $codes{ $r->status }++;
    push @values, $r->field('value');
    $backends{ $r->header('X-Backend') // 'none' }++;
}
is_deeply(\%codes, { 200 => 10 }, '10 requests through the balancer: all 200');
is_deeply(\@values, [1 .. 10], 'the counter goes 1..10 across backends');
is_deeply([sort keys %backends], [21352, 21353], 'both backends served requests')
    or diag(explain \%backends);

my $sid = $c->cookie('MSMSESSION') // '';
like($sid, qr/^[0-9a-f]{32}-n[123]$/, 'one session id');

# the same session read directly on each backend
for my $b ($b1, $b2) {
    my $cb = MsmTest::client(base => $b->url);
    $cb->cookie(MSMSESSION => $sid);
    my $r = $cb->get('/msm/app.cgi?op=read');
    is_deeply($r->session, { n => 10 }, 'backend ' . $b->port . ' reads n=10');
}

# losing a backend loses no session
my @kids = $b1->children;
ok(@kids >= 1, 'backend b1 has children (' . scalar(@kids) . ')');
$b1->kill9;
ok(!MsmTest::port_open(21352), 'b1 killed (parent and children)');
my $cb2 = MsmTest::client(base => $b2->url);
$cb2->cookie(MSMSESSION => $sid);
is($cb2->get('/msm/app.cgi?op=incr&k=n')->field('value'), 11, 'b2 continues the session: 11');

# through the front: the balancer routes to the surviving backend
my @after;
for (1 .. 3) {
    my $r = $c->get('/msm/app.cgi?op=incr&k=n');
    push @after, $r->status == 200 ? $r->field('value') : 'status ' . $r->status;
}
# a request to the dead member may fail once before the balancer marks it in error
my @ok = grep { /^\d+$/ } @after;
ok(@ok >= 2, 'front keeps serving after a backend died (' . join(',', @after) . ')');
is($ok[-1], 11 + @ok, 'the counter continued without loss');

$front->stop;
$b2->stop;
ok(!MsmTest::port_open(21351) && !MsmTest::port_open(21353), 'front and b2 stopped');
