# Create, read, modify, destroy a session through mod_session's SessionEnv /
# SessionHeader (the test app) under /msm/, checked on both sides: what the
# client sees (cookie format, one Set-Cookie, Max-Age=0 on destroy) and what
# memcached holds (key t:<hex> on the node named in the cookie: a copy "MSM1 S
# <version> <written> <node>\n" + the mod_session url-encoded value; its backup,
# the same key on the next node naming the same primary; on destroy a tombstone
# "MSM1 D" on every node). The session is served by several httpd children
# (prefork) with the same content.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Time::HiRes qw(time sleep);

plan tests => 47, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my %port = (n1 => 21301, n2 => 21302, n3 => 21303);
my %mc = map { $_ => MsmTest::memcached(port => $port{$_}) } sort keys %port;
my %next = (n1 => 'n2', n2 => 'n3', n3 => 'n1');      # backup node: the next in MsmNodes
my $COOKIE = qr/^([0-9a-f]{32})-(n[123])$/;

# node state is shared memory of the Apache::Test server and outlives test files
ok(MsmTest::wait_nodes_live([qw(n1 n2 n3)], timeout => 10), 'n1-n3 live for mod_msm');

sub url_decode { my $s = shift // ''; $s =~ tr/+/ /; $s =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge; $s }
sub decode_session {
    my $v = shift // '';
    return { map { my ($k, $x) = split /=/, $_, 2; (url_decode($k) => url_decode($x)) }
             grep { length } split /&/, $v };
}
sub copies {        # node => parsed copy of the session (MsmTest::parse_copy), where there is one
    my $cookie = shift;
    my %c;
    for my $n (sort keys %mc) {
        my $x = $mc{$n}->copy($cookie);
        $c{$n} = $x if $x;
    }
    return \%c;
}
sub where_is {      # node names holding a copy of $cookie's session (of $kind, default any)
    my ($cookie, $kind) = @_;
    my $c = copies($cookie);
    return join ',', grep { !$kind || $c->{$_}{kind} eq $kind } sort keys %$c;
}
sub primaries {     # node names holding a copy that names that node as its primary
    my $c = copies(shift);
    return join ',', grep { ($c->{$_}{primary} // '') eq $_ } sort keys %$c;
}

my $c = MsmTest::client();

# ---------------------------------------------------------------- no session
my $r = $c->get('/msm/app.cgi?op=read');
is($r->status, 200, 'read without a session: 200') or diag($r->dump);
is(scalar(my @sc0 = $r->set_cookies), 0, 'read without a session: no Set-Cookie');

# ---------------------------------------------------------------- create
my %want = (name => 'alice', note => 'a b&c=d %41 +');
$r = $c->get('/msm/app.cgi?op=set&k=name&v=alice&k2=note&v2=a%20b%26c%3Dd%20%2541%20%2B');
is($r->status, 200, 'create (op=set): 200') or diag($r->dump);
my @sc = $r->set_cookies;
is(scalar(@sc), 1, 'create: exactly one Set-Cookie header') or diag(join "\n", @sc);
my $sid = $r->cookie('MSMSESSION') // '';
like($sid, $COOKIE, "create: cookie MSMSESSION=<32 lowercase hex>-<n1|n2|n3> ($sid)");
my ($hex, $node) = $sid =~ $COOKIE;
$node //= 'n1';
my $key = MsmTest::session_key($sid);
# (its backup, the same key on the next node, names $node as primary too)
is(primaries($sid), $node, "key $key: the primary copy is on the node named in the cookie ($node) only");
is_deeply($r->session, \%want, 'app sees the new session');

my $copy = $mc{$node}->copy($sid);
my $stored = $copy && $copy->{kind} eq 'S' ? $copy->{payload} : undef;
ok(defined $stored, 'value stored under the key (a session copy, "MSM1 S ...")');
like($stored // '', qr/^[^&=\s]+=[^&=\s]*(?:&[^&=\s]+=[^&=\s]*)*$/,
     "stored value is a url-encoded k=v&k=v string ($stored)");
is_deeply(decode_session($stored), \%want, 'stored value decodes to the session entries');

ok(MsmTest::wait_until(sub { where_is($sid) eq join(',', sort $node, $next{$node}) }, timeout => 5),
   "backup $key is on the next node $next{$node} (after the response), nowhere else")
    or diag('copies on: ' . where_is($sid));
my $bak = $mc{ $next{$node} }->copy($sid) || {};
ok(($bak->{payload} // '') eq ($stored // 'x') && ($bak->{primary} // '') eq $node
   && ($bak->{version} // -1) == ($copy ? $copy->{version} : -2),
   'backup holds the same value and version, naming the primary') or diag(explain $bak);

# ---------------------------------------------------------------- read
$r = $c->get('/msm/app.cgi?op=read');
is($r->status, 200, 'read: 200');
is_deeply($r->session, \%want, 'read: same content');
is($r->field('raw'), $stored, 'read: HTTP_SESSION (SessionEnv) is the stored mod_session string');
is(scalar(my @sc1 = $r->set_cookies), 0, 'read of an unchanged session: no Set-Cookie');

# the same session served by several children at once (prefork; the app reports its pid)
my $base = $c->base;
my @par = MsmTest::parallel(4, sub {
    my $cc = MsmTest::client(base => $base);
    $cc->cookie(MSMSESSION => $sid);
    my $rr = $cc->get('/msm/app.cgi?op=sleep&ms=700');
    return { status => $rr->status, pid => $rr->pid, session => $rr->session,
             cookies => scalar(my @x = $rr->set_cookies) };
}, timeout => 30);
my %pids = map { ($_->{pid} // 0) => 1 } @par;
is_deeply([map { $_->{status} // 'error' } @par], [200, 200, 200, 200], '4 concurrent reads: 200')
    or diag(explain \@par);
cmp_ok(scalar(grep { $_ } keys %pids), '>=', 2,
       'concurrent reads were served by >= 2 httpd children (' . join(',', sort keys %pids) . ')');
is(scalar(grep { !eq_hash($_->{session} || {}, \%want) } @par), 0,
   'every child saw the same session content');
is(scalar(grep { $_->{cookies} } @par), 0, 'no Set-Cookie on any of these reads');

# ---------------------------------------------------------------- modify
my (@vals, %mpids, $extra_cookies, $changed_id);
$extra_cookies = 0;
for my $i (1 .. 8) {
    my $rr = $c->get('/msm/app.cgi?op=incr&k=n');
    push @vals, $rr->field('value') // 'status ' . $rr->status;
    $mpids{ $rr->pid // 0 }++;
    my @x = $rr->set_cookies;
    $extra_cookies++ if @x > 1;
    $changed_id++ if @x && ($rr->cookie('MSMSESSION') // '') ne $sid;
}
is_deeply(\@vals, [1 .. 8], 'modify: incr x8 -> 1..8 (every write read back by the next request)');
%pids = (%pids, %mpids);
diag('children that served the modifications: ' . join(',', sort keys %mpids));
ok(!$extra_cookies, 'modify: never more than one Set-Cookie');
ok(!$changed_id, 'modify: the session id stays the same');
is($c->cookie('MSMSESSION'), $sid, 'cookie jar still holds the same id');
is_deeply(decode_session(($mc{$node}->copy($sid) || {})->{payload}), { %want, n => 8 },
          'memcached primary holds the modified entries');
ok(MsmTest::wait_until(sub { eq_hash(decode_session(($mc{ $next{$node} }->copy($sid) || {})->{payload}),
                                     { %want, n => 8 }) }, timeout => 5),
   'backup holds the modified entries too');
$r = $c->get('/msm/app.cgi?op=set&k=name&v=bob');
is_deeply($r->session, { %want, name => 'bob', n => 8 }, 'modify an existing key');
# no SessionMaxAge and the same id: the cookie is not sent again (src/msm_copy.c
# msm_decide_cookie)
is($r->cookie('MSMSESSION'), undef, 'modify an existing key: same id, no Set-Cookie');
is_deeply(MsmTest::client()->get('/msm/app.cgi?op=read')->session, {},
          'another client without the cookie sees no session');
my $other = MsmTest::client();
$other->cookie(MSMSESSION => $sid);
is_deeply($other->get('/msm/app.cgi?op=read')->session, { %want, name => 'bob', n => 8 },
          'another client presenting the cookie sees the modified session');

# ---------------------------------------------------------------- destroy
$r = $c->get('/msm/app.cgi?op=destroy');
is($r->status, 200, 'destroy: 200') or diag($r->dump);
is_deeply($r->session, {}, 'destroy: the app emptied the session');
@sc = $r->set_cookies;
is(scalar(@sc), 1, 'destroy: exactly one Set-Cookie header') or diag(join "\n", @sc);
like($sc[0] // '', qr/^MSMSESSION=;/, 'destroy: the cookie is emptied');
like($sc[0] // '', qr/;\s*Max-Age=0(?:;|$)/i, 'destroy: the cookie is cleared with Max-Age=0');
ok(!defined $c->cookie('MSMSESSION'), 'client dropped the cookie');
# a destroy writes a tombstone on every reachable node before the response (no deletes)
is(where_is($sid, 'S'), '', 'destroy: no session copy left on any node, right after the response');
my $tomb = $mc{$node}->copy($sid) || {};
ok(($tomb->{kind} // '') eq 'D' && ($tomb->{payload} // 'x') eq '',
   "destroy: $key on $node is a tombstone, without the session's content") or diag(explain $tomb);
is(where_is($sid, 'D'), 'n1,n2,n3', 'destroy: the backup (and every other node) holds the tombstone too');
is_deeply($c->get('/msm/app.cgi?op=read')->session, {}, 'after destroy: no session');

# the destroyed id presented again: an empty session, never resurrected
$other->cookie(MSMSESSION => $sid);
$r = $other->get('/msm/app.cgi?op=read');
is($r->status, 200, 'destroyed id presented again: 200');
is_deeply($r->session, {}, 'destroyed id presented again: empty session');
# defect fixed (the old module cleared the cookie of a request whose session it did not
# find): the browser may hold a newer cookie by then, so only the destroying request
# clears it; this one leaves it alone
is(scalar(grep { /^MSMSESSION=/ } $r->set_cookies), 0,
   'destroyed id presented again: the cookie is left alone (no Set-Cookie, not cleared)');
$r = $other->get('/msm/app.cgi?op=set&k=x&v=1');
my $nsid = $r->cookie('MSMSESSION') // '';
like($nsid, $COOKIE, 'a write after that creates a session');
my ($nhex) = $nsid =~ $COOKIE;
isnt($nhex // '', $hex, '... under a new id, not the destroyed one');
$other->get('/msm/app.cgi?op=destroy');

# all of it was spread over several children
cmp_ok(scalar(grep { $_ } keys %pids), '>=', 2,
       'the session was served by >= 2 different httpd children overall ('
       . scalar(keys %pids) . ')');
