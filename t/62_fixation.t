# Session fixation with mod_auth_form (/auth/, user msm / secret, t/conf/htpasswd)
# and mod_session_crypto (/auth/ and /crypto/ share the passphrase, the cookie name
# and path=/, so a session made under /crypto/ is the pre-login session of /auth/).
#   * MsmRegenerateOnLogin On (default): the login gives the session a new id, the
#     old id is destroyed at once (a tombstone "MSM1 D" replaces its copy on every
#     node, backup included, before the response), the content is kept, the
#     protected page works with the new cookie and not with the old one;
#   * /auth/nofix/dologin (MsmRegenerateOnLogin Off): the id stays;
#   * memcached holds only ciphertext: neither the password nor the user name.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Time::HiRes qw(time sleep);

plan tests => 38,
    need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() },
    need_module('mod_auth_form.c', 'mod_session_crypto.c');

my %port = (n1 => 21301, n2 => 21302, n3 => 21303);
my %mc = map { $_ => MsmTest::memcached(port => $port{$_}) } sort keys %port;
ok(MsmTest::wait_nodes_live([sort keys %port], timeout => 10), 'nodes n1-n3 live');

my $ID = qr/^([0-9a-f]{32})-(n[123])$/;
sub copies_of {            # node => the copy of this hex it holds (MsmTest::parse_copy)
    my $hex = shift;
    my %c;
    for my $n (sort keys %mc) {
        my $raw = $mc{$n}->get(MsmTest::session_key($hex));
        $c{$n} = MsmTest::parse_copy($raw) || { kind => 'not a copy' } if defined $raw;
    }
    return \%c;
}
sub sessions_of {          # "node:kind" of every copy of this hex that is not a tombstone
    my $c = copies_of(shift);
    return map { "$_:$c->{$_}{kind}" } grep { $c->{$_}{kind} ne 'D' } sort keys %$c;
}
sub tombstones_of {        # nodes holding the tombstone of this hex
    my $c = copies_of(shift);
    return grep { $c->{$_}{kind} eq 'D' } sort keys %$c;
}
sub counter {
    my $st = MsmTest::msm_status() or return -1;
    return $st->{counters}{$_[0]} // -1;
}
sub login {
    my ($c, $path) = @_;
    return $c->post($path // '/auth/dologin',
                    { httpd_username => 'msm', httpd_password => 'secret' });
}
sub msm_cookies { grep { /^MSMSESSION=/ } $_[0]->set_cookies }

# ------------------------------------------------------------ regenerate on login
my $c = MsmTest::client();
my $r = $c->get('/crypto/app.cgi?op=set&k=cart&v=apple');
is($r->status, 200, 'anonymous session made under /crypto/') or diag($r->dump);
my $pre = $c->cookie('MSMSESSION') // '';
my ($pre_hex, $pre_node) = $pre =~ $ID;
ok($pre_hex, "pre-login id $pre");
$pre_node //= 'n1';
ok((($mc{$pre_node}->copy($pre) || {})->{primary} // '') eq $pre_node,
   'pre-login session stored under its key');

# the protected page needs a login
my $r0 = $c->get('/auth/app/app.cgi?op=read');
isnt($r0->status, 200, 'protected page before the login: ' . $r0->status);

my $regen0 = counter('regenerated');
$r = login($c);
like($r->status, qr/^30[23]$/, 'login: redirect (' . $r->status . ')') or diag($r->dump);
like($r->header('Location') // '', qr{/auth/app/app\.cgi}, 'login: to the success location');
is(scalar(msm_cookies($r)), 1, 'login: one MSMSESSION Set-Cookie');
my $post = $c->cookie('MSMSESSION') // '';
my ($post_hex, $post_node) = $post =~ $ID;
ok($post_hex, "post-login id $post");
isnt($post_hex, $pre_hex, 'the login changed the session id (hex part)');
$post_node //= 'n1';

# at once: the old session is gone right after the response (a tombstone replaced it)
is(($mc{$pre_node}->copy($pre) || {})->{kind} // 'none', 'D',
   'the old key is gone right after the login (its copy is a tombstone)');
ok(!sessions_of($pre_hex) && join(',', tombstones_of($pre_hex)) eq 'n1,n2,n3',
   'the old backup is gone too: a tombstone on every node, no session copy anywhere')
    or diag(explain copies_of($pre_hex));
ok((($mc{$post_node}->copy($post) || {})->{primary} // '') eq $post_node, 'the new key is stored');
is(counter('regenerated') - $regen0, 1, 'msm-status: regenerated +1');

# the content is kept, the protected page works with the new cookie
$r = $c->get('/auth/app/app.cgi?op=read');
is($r->status, 200, 'protected page with the new cookie: 200') or diag($r->dump);
my $s = $r->session // {};
is($s->{cart}, 'apple', 'pre-login content kept (cart=apple)');
is($s->{'msmtest-user'}, 'msm', 'logged in as msm');
is($c->cookie('MSMSESSION'), $post, 'the id does not change again on the next request');

# the old cookie (what an attacker who planted it knows) is worthless
my $att = MsmTest::client();
$att->cookie(MSMSESSION => $pre);
my $ra = $att->get('/auth/app/app.cgi?op=read');
isnt($ra->status, 200, 'protected page with the old cookie: not 200 (' . $ra->status . ')');
unlike($ra->body, qr/apple|msmtest-user/, 'the old cookie shows none of the session');
my $ra2 = $att->get('/crypto/app.cgi?op=read');
is_deeply($ra2->session, {}, 'the old cookie reads an empty session elsewhere too');
ok(!sessions_of($pre_hex), 'the old cookie did not bring the old session back (tombstones only)')
    or diag(explain copies_of($pre_hex));

# a second login of the same user changes nothing
$r = login($c);
is($c->cookie('MSMSESSION'), $post, 'logging in again as the same user keeps the id');

# ------------------------------------------------------------ crypto: no clear text
my $val = ($mc{$post_node}->copy($post) || {})->{payload} // '';
ok(length $val > 20, 'the logged-in session is stored (' . length($val) . ' bytes)');
unlike($val, qr/secret/, 'memcached value: no password in clear');
# the entries' keys are msmtest-user, msmtest-pw, cart: "msmtest" finds the
# keys, "apple" the content. A bare "user=" or "pw=" can also end a base64
# ciphertext by chance (letters, then its = padding): it failed a run so.
unlike($val, qr/msmtest|apple/, 'memcached value: no user name, keys or content in clear');
my @bak;
MsmTest::wait_until(sub {      # the same key on another node, naming $post_node
    @bak = map { $_->{payload} } grep { $_ && ($_->{primary} // '') eq $post_node }
           map { $mc{$_}->copy($post) } grep { $_ ne $post_node } sort keys %mc;
    return @bak;
}, timeout => 5);
ok(@bak == 1 && $bak[0] !~ /secret|msmtest|apple/, 'its backup copy: ciphertext too');

# logout (an emptied session) removes it
$r = $c->get('/auth/app/app.cgi?op=destroy');
is($r->status, 200, 'logout: destroy the session');
ok(MsmTest::wait_until(sub { !sessions_of($post_hex) && join(",", tombstones_of($post_hex)) eq "n1,n2,n3" }, timeout => 5),
   'logout: the session is gone (tombstones replaced its copies)') or diag(explain copies_of($post_hex));

# ------------------------------------------------------------ MsmRegenerateOnLogin Off
my $c2 = MsmTest::client();
$c2->get('/crypto/app.cgi?op=set&k=cart&v=pear');
my $pre2 = $c2->cookie('MSMSESSION') // '';
like($pre2, $ID, "nofix: pre-login id $pre2");
$regen0 = counter('regenerated');
$r = login($c2, '/auth/nofix/dologin');
like($r->status, qr/^30[23]$/, 'nofix: login redirects (' . $r->status . ')') or diag($r->dump);
is($c2->cookie('MSMSESSION'), $pre2, 'nofix: the id stays the same');
$r = $c2->get('/auth/app/app.cgi?op=read');
is($r->status, 200, 'nofix: protected page with the (same) cookie');
is_deeply([ @{ $r->session // {} }{qw(cart msmtest-user)} ], ['pear', 'msm'],
          'nofix: content kept, logged in');
is(counter('regenerated') - $regen0, 0, 'nofix: msm-status regenerated +0');

# ------------------------------------------------------------ login without a session
my $c3 = MsmTest::client();
$r = login($c3);
like($r->status, qr/^30[23]$/, 'login without a prior session: redirect');
my $fresh = $c3->cookie('MSMSESSION') // '';
like($fresh, $ID, 'login without a prior session: one new session');
is($c3->get('/auth/app/app.cgi?op=read')->status, 200, 'and it opens the protected page');
