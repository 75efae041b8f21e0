# Smoke tests of the test infrastructure itself: MsmTest's memcached control,
# the test application under mod_session_cookie (/cookie/), prefork children,
# the second vhost and the extra-httpd launcher.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Time::HiRes qw(time);

plan tests => 47, need_module('mod_cgi.c', 'mod_session.c', 'mod_session_cookie.c');

# ------------------------------------------------------------ memcached helper
{
    my $mc = MsmTest::memcached(port => 21399);
    ok($mc->pid && kill(0, $mc->pid), 'memcached started, pid alive');
    ok(MsmTest::port_open(21399), 'memcached port answers');
    like($mc->version, qr/^\d+\.\d+/, 'version: ' . $mc->version);
    ok($mc->set('t:infra-a', 'hello world', 60), 'set');
    is($mc->get('t:infra-a'), 'hello world', 'get');
    is($mc->stat('cmd_set'), 1, 'stats cmd_set == 1');
    is_deeply([$mc->keys], ['t:infra-a'], 'keys via lru_crawler metadump');
    my $ttl = $mc->ttl('t:infra-a');
    ok(defined $ttl && $ttl > 50 && $ttl <= 60, "ttl ~60 ($ttl)");

    $mc->sigstop;
    my $t0 = time;
    my $r = eval { $mc->raw('version', timeout => 0.5) };
    ok(!defined $r && $@ && time - $t0 < 3, 'SIGSTOPped memcached does not answer (bounded wait)');
    $mc->sigcont;
    like($mc->version, qr/^\d/, 'answers again after SIGCONT');

    my $old = $mc->pid;
    $mc->restart;
    ok($mc->pid && $mc->pid != $old && !kill(0, $old), 'restart: new process, old one gone');
    is_deeply([$mc->keys], [], 'restart: cache is empty');
    is($mc->stat('curr_items'), 0, 'restart: curr_items 0');

    $mc->kill9;
    ok(!MsmTest::port_open(21399), 'kill9: port closed');
    ok(!eval { $mc->raw('version', timeout => 0.5); 1 }, 'kill9: no answer');
    $mc->restart;
    ok(MsmTest::port_open(21399), 'restart after kill9');
    my $pid = $mc->pid;
    $mc->stop;
    ok(!kill(0, $pid) && !MsmTest::port_open(21399), 'stop: process and port gone');
}

# ------------------------------------------------------------ app without session
{
    my $c = MsmTest::client();
    my $r = $c->get('/plain/app.cgi?op=read');
    is($r->status, 200, '/plain/ app answers') or diag($r->dump);
    is_deeply($r->session, {}, '/plain/: empty session');
    is(scalar($r->set_cookies), 0, '/plain/: no Set-Cookie');
    ok(($r->pid // 0) > 1, '/plain/: app reports the child pid');
}

# ------------------------------------------------------------ app under mod_session_cookie
{
    my $c = MsmTest::client();
    my $r = $c->get('/cookie/app.cgi?op=read');
    is($r->status, 200, '/cookie/ read');
    is_deeply($r->session, {}, 'new client: empty session');
    is(scalar($r->set_cookies), 0, 'read without a session sets no cookie');

    $r = $c->get('/cookie/app.cgi?op=set&k=user&v=' . 'a%20b%26c%3Dd');
    is($r->status, 200, 'set');
    ok(defined $r->cookie('session'), 'set: Set-Cookie session=...')
        or diag($r->dump);
    ok(defined $c->cookie('session'), 'cookie stored in the jar');

    $r = $c->get('/cookie/app.cgi?op=read');
    is_deeply($r->session, { user => 'a b&c=d' }, 'read back (url-encoding round trip)');

    my @vals;
    push @vals, $c->get('/cookie/app.cgi?op=incr&k=n')->field('value') for 1 .. 3;
    is_deeply(\@vals, [1, 2, 3], 'incr x3 -> 1,2,3');
    is_deeply($c->get('/cookie/app.cgi?op=read')->session,
              { user => 'a b&c=d', n => 3 }, 'session holds both keys');

    my $c2 = MsmTest::client();
    is_deeply($c2->get('/cookie/app.cgi?op=read')->session, {},
              'a second client has a session of its own');
    is($c2->get('/cookie/app.cgi?op=incr&k=n')->field('value'), 1, 'second client: incr -> 1');
    is($c->get('/cookie/app.cgi?op=incr&k=n')->field('value'), 4, 'first client unaffected: incr -> 4');

    $r = $c->get('/cookie/app.cgi?op=destroy');
    is_deeply($r->session, {}, 'destroy: app reports an empty session');
    ok(!defined $c->cookie('session') || $c->cookie('session') eq '',
       'destroy: cookie removed/emptied') or diag(join "\n", $r->set_cookies);
    is_deeply($c->get('/cookie/app.cgi?op=read')->session, {}, 'after destroy: empty');

    # several children: concurrent slow requests must be served by different children
    my $base = $c->base;
    my $t0 = time;
    my @res = MsmTest::parallel(3, sub {
        my $cc = MsmTest::client(base => $base);
        my $rr = $cc->get('/cookie/app.cgi?op=sleep&ms=800');
        return { status => $rr->status, pid => $rr->pid };
    }, timeout => 30);
    my $dt = time - $t0;
    is_deeply([map { $_->{status} // 'error' } @res], [200, 200, 200], '3 concurrent requests ok')
        or diag(explain \@res);
    my %pids = map { ($_->{pid} // 0) => 1 } @res;
    cmp_ok(scalar(keys %pids), '>=', 2, 'at least 2 different httpd children served them ('
        . join(',', sort keys %pids) . ')');
    cmp_ok($dt, '<', 2.2, sprintf('they ran concurrently (%.2fs for 3 x 0.8s)', $dt));
}

# ------------------------------------------------------------ second vhost
{
    my $url = MsmTest::url('msm_vhost2');
    isnt($url, MsmTest::url(), "vhost msm_vhost2 has a port of its own ($url)");
    my $r = MsmTest::client(base => $url)->get('/plain/app.cgi?op=read');
    is($r->status, 200, 'vhost msm_vhost2 serves the app');
}

# ------------------------------------------------------------ extra httpd launcher
{
    my $h = MsmTest::httpd(port => 21398, name => 'infra', msm => 0, conf => <<'EOF');
Alias /cookie/ "@T@/htdocs/msm/"
<Location /cookie/>
    Session On
    SessionEnv On
    SessionHeader X-Replace-Session
    SessionCookieName session path=/
</Location>
EOF
    ok($h->pid && kill(0, $h->pid), 'extra httpd started');
    my @kids = MsmTest::wait_until(sub { my @k = $h->children; @k >= 2 ? \@k : undef },
                                   timeout => 10);
    ok(@kids && @{ $kids[0] } >= 2, 'extra httpd has >= 2 children');
    my $c = MsmTest::client(base => $h->url);
    is($c->get('/cookie/app.cgi?op=incr&k=x')->field('value'), 1, 'extra httpd: incr -> 1');
    is($c->get('/cookie/app.cgi?op=incr&k=x')->field('value'), 2, 'extra httpd: incr -> 2');
    my @children = $h->children;
    $h->kill9;
    ok(!MsmTest::port_open(21398), 'kill9: port closed');
    ok(!grep({ kill 0, $_ } @children), 'kill9: parent and children gone');
}
