# Session locks and requests within requests (README "Locking": "Subrequests and
# internal redirects reuse the lock of their top request"; the lock is released
# "in any case in a cleanup of the request pool, so errors, aborted connections
# and internal redirects release it too"). An extra httpd (mod_include loaded)
# on memcached l1, l2 with MsmLocking On, MsmLockTimeout 8000 and MsmLockExpire
# 10, so that a request stuck on a lock, or a lock left behind, would cost seconds:
#   - ErrorDocument 404 -> the app (an internal redirect) changes the session:
#     no self-deadlock, the change is stored, one lock taken and released;
#   - an SSI page includes the app (a subrequest) reading the session: the same;
#   - a client that closes its connection in the middle of a slow request: the
#     next request of the session gets the lock once the slow one ended, long
#     before MsmLockExpire.
# One lock per request shows in memcached's counters: a lock is add + gets + a
# compare-and-delete ("md", counted as a delete), so one delete = one lock.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Time::HiRes qw(time sleep);

plan tests => 16, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my %mc = (l1 => MsmTest::memcached(port => 21430), l2 => MsmTest::memcached(port => 21431));
my $h = MsmTest::httpd(port => 21432, name => 't36', conf => MsmTest::app_conf(
    'l1:127.0.0.1:21430 l2:127.0.0.1:21431', 'l36:', MsmTest::module_line('include'), 'MsmLockExpire 10', <<"EOF"));
Alias /lk/ "\@T\@/htdocs/msm/"
Alias /lk-ssi/ "\@T\@/htdocs/ssi/"
<Directory "\@T\@/htdocs/ssi">
    Options +Includes
    AddOutputFilter INCLUDES .shtml
    Require all granted
</Directory>
<Location /lk/>
    \@APP_SESSION\@
    MsmLocking On
    MsmLockTimeout 8000
    ErrorDocument 404 /lk/app.cgi?op=incr&k=e
</Location>
<Location /lk-ssi/>
    \@APP_SESSION\@
    MsmLocking On
    MsmLockTimeout 8000
</Location>
EOF
my $base = $h->url;
# A request that waited for its own lock would take MsmLockTimeout (8 s) and end
# in a 503; one that does not costs a CGI run or two (20-100 ms here, more on a
# busy 2-core machine): 2 s tells the two apart.
my $NO_WAIT = 2;

sub lock_keys { return grep { /^lock:/ } map { $_->keys } values %mc }
sub stored {
    my ($sid, $k) = @_;
    my $p = (($mc{ MsmTest::cookie_node($sid) }->copy($sid, 'l36:') || {})->{payload}) // '';
    return $p =~ /(?:^|&)\Q$k\E=(\d+)/ ? $1 : undef;
}

my $c = MsmTest::client(base => $base);
my $r = $c->get('/lk/app.cgi?op=set&k=n&v=5');
my $sid = $c->cookie('MSMSESSION') // '';
ok($r->status == 200 && MsmTest::cookie_hex($sid), "a session (n=5) under MsmLocking On ($sid)");

# one request, measured: (response, memcached operations over both nodes)
sub measured {
    my $path = shift;
    my $s0 = MsmTest::mc_ops_settled(\%mc, quiet => 0.2);
    my $r = $c->get($path);
    my $d = MsmTest::mc_ops_delta($s0, MsmTest::mc_ops_settled(\%mc, quiet => 0.3));
    diag(sprintf '%s: %d in %.0f ms; memcached %s', $path, $r->status, $r->elapsed * 1000, MsmTest::mc_ops_str($d));
    return ($r, $d->{_sum});
}

# ---------------------------------------------------------------- internal redirect
my ($rr, $d) = measured('/lk/missing.html');
is($rr->status, 404, 'ErrorDocument: the missing page answers 404 (served by the app)');
cmp_ok($rr->elapsed, '<', $NO_WAIT, 'ErrorDocument: the internal redirect does not wait for its own lock');
is($rr->field('value'), 1, "ErrorDocument: the redirected app saw the session and incremented e");
is(stored($sid, 'e'), 1, 'ErrorDocument: the change is stored in memcached');
is($d->{delete}, 1, 'ErrorDocument: one lock taken and released for the request and its redirect');

# ---------------------------------------------------------------- subrequest (SSI include)
($rr, $d) = measured('/lk-ssi/lock.shtml');
is($rr->status, 200, 'SSI: the page including the app answers 200');
cmp_ok($rr->elapsed, '<', $NO_WAIT, 'SSI: the subrequest does not wait for its own lock');
like($rr->body, qr/"session":\{[^}]*"n":"5"/, 'SSI: the included app saw the session (n=5)') or diag($rr->body);
is($d->{delete}, 1, 'SSI: one lock taken and released for the page and its subrequest');
is_deeply([lock_keys()], [], 'no lock key left');

# ---------------------------------------------------------------- client gone mid-request
# a request that sleeps 1.5 s holding the lock; its client closes after 0.3 s;
# the next request of the session waits for the lock until the slow one ended
my $t0 = time;
my $sock = MsmTest::raw_request($base, '/lk/app.cgi?op=incr&k=n&sleep_ms=1500', cookie => $sid);
sleep 0.3;
close $sock;
$r = $c->get('/lk/app.cgi?op=incr&k=n');
my $total = time - $t0;
diag(sprintf 'client gone: the next request answered %.2f s after the slow one started (waited %.2f s)',
     $total, $r->elapsed);
is($r->status, 200, 'client gone: the next request of the session answers 200');
# it waited for the slow request's lock (>= 1.5 s after its start, minus
# scheduling), not for MsmLockExpire (10 s after it); 5 s leaves 3.5 s for a
# busy machine
cmp_ok($total, '>=', 1.3, 'client gone: ... after the slow request released the lock (it did wait)');
cmp_ok($total, '<', 5, 'client gone: ... long before MsmLockExpire (10 s)');
cmp_ok($r->field('value') // 0, '>=', 6, 'client gone: it incremented the session (n >= 6)');
ok(MsmTest::wait_until(sub { !lock_keys() }, timeout => 3), 'no lock key left');
