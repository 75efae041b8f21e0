# mod_session_crypto on top of mod_msm (/crypto/, SessionCryptoPassphrase):
# memcached only ever holds ciphertext (primary and backup: the payload of the
# copy "MSM1 S ...\n<ciphertext>" under t:<hex>), a read decrypts it,
# and an unchanged session is not written again although every encryption of the
# same entries gives a different ciphertext (random IV): mod_msm compares the
# decrypted entries, not the encoded string.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Time::HiRes qw(time sleep);

plan tests => 27,
    need_module('mod_session_crypto.c'),
    need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my %port = (n1 => 21301, n2 => 21302, n3 => 21303);
my %mc = map { $_ => MsmTest::memcached(port => $port{$_}) } sort keys %port;
my %next = (n1 => 'n2', n2 => 'n3', n3 => 'n1');
my $COOKIE = qr/^([0-9a-f]{32})-(n[123])$/;

ok(MsmTest::wait_nodes_live([qw(n1 n2 n3)], timeout => 10), 'n1-n3 live for mod_msm');

my $secret = 'PlainSecret' . MsmTest::random_hex();
my $c = MsmTest::client();
my $r = $c->get("/crypto/app.cgi?op=set&k=card&v=$secret");
is($r->status, 200, 'crypto: create 200') or diag($r->dump);
my $sid = $r->cookie('MSMSESSION') // '';
like($sid, $COOKIE, "crypto: cookie $sid");
my (undef, $p) = $sid =~ $COOKIE;
$p //= 'n1';
my $b = $next{$p};
my $key = MsmTest::session_key($sid);

my $raw = $mc{$p}->get($key);                  # the whole copy, header included
my $ct = (MsmTest::parse_copy($raw) || {})->{payload};
ok(defined $ct && length $ct > 20, 'crypto: a value is stored under ' . $key
   . ' (' . length($ct // '') . ' bytes)');
unlike($ct // '', qr/PlainSecret|\Q$secret\E/, 'crypto: memcached does not hold the plaintext value');
unlike($ct // '', qr/card=|(?:^|&)card/, 'crypto: ... nor the entry name');
like($ct // '', qr/^[A-Za-z0-9+\/=]+$/, 'crypto: the stored value is base64 ciphertext');
ok(MsmTest::wait_until(sub { (($mc{$b}->copy($sid) || {})->{primary} // '') eq $p }, timeout => 5),
   'crypto: backup written');
my $bak = ($mc{$b}->copy($sid) || {})->{payload} // '';
unlike($bak, qr/PlainSecret/, 'crypto: the backup holds no plaintext either');
is($bak, $ct, 'crypto: the backup is the same ciphertext');

# read
my $s0 = MsmTest::mc_ops_settled(\%mc, quiet => 0.2);
$r = $c->get('/crypto/app.cgi?op=read');
my $d = MsmTest::mc_ops_delta($s0, MsmTest::mc_ops_settled(\%mc, quiet => 0.4));
is($r->status, 200, 'crypto: read 200');
is_deeply($r->session, { card => $secret }, 'crypto: a read returns the decrypted value');
is($d->{_sum}{set}, 0, 'crypto: reading unchanged does not write (cmd_set delta 0)')
    or diag(MsmTest::mc_ops_str($d));
is($d->{$p}{touch}, 1, 'crypto: ... one touch (gats) on the primary');
is($mc{$p}->get($key), $raw, 'crypto: ... the stored ciphertext is untouched (the same copy)');

# the app re-sends the same entry: mod_session re-encrypts (new IV), mod_msm does not write
$s0 = MsmTest::mc_ops_settled(\%mc, quiet => 0.1);
$r = $c->get("/crypto/app.cgi?op=set&k=card&v=$secret");
$d = MsmTest::mc_ops_delta($s0, MsmTest::mc_ops_settled(\%mc, quiet => 0.4));
is_deeply($r->session, { card => $secret }, 'crypto: same value set again: content');
is($d->{_sum}{set}, 0, 'crypto: same value set again (re-encrypted by mod_session_crypto): cmd_set delta 0')
    or diag(MsmTest::mc_ops_str($d));
is($mc{$p}->get($key), $raw, 'crypto: ... the stored ciphertext is untouched (the same copy)');

# the ciphertext of the same entries differs each time it is written: add then remove an entry
$c->get('/crypto/app.cgi?op=set&k=tmp&v=1');
$r = $c->get('/crypto/app.cgi?op=set&k=tmp&v=');
is_deeply($r->session, { card => $secret }, 'crypto: entry added and removed again: same entries');
my $ct2 = ($mc{$p}->copy($sid) || {})->{payload} // '';
isnt($ct2, $ct, 'crypto: ... written again: another ciphertext for the same entries (random IV)');
unlike($ct2, qr/PlainSecret/, 'crypto: ... still no plaintext');
$s0 = MsmTest::mc_ops_settled(\%mc, quiet => 0.4);
$r = $c->get('/crypto/app.cgi?op=read');
$d = MsmTest::mc_ops_delta($s0, MsmTest::mc_ops_settled(\%mc, quiet => 0.4));
is_deeply($r->session, { card => $secret }, 'crypto: read of the new ciphertext');
is($d->{_sum}{set}, 0, 'crypto: and again no write on an unchanged read') or diag(MsmTest::mc_ops_str($d));

# another client with the cookie reads the same session; without the passphrase (the
# plain /msm/ location on the same nodes) the ciphertext is no session content
my $c2 = MsmTest::client();
$c2->cookie(MSMSESSION => $sid);
is_deeply($c2->get('/crypto/app.cgi?op=read')->session, { card => $secret },
          'crypto: another client presenting the cookie reads it');
$r = $c2->get('/msm/app.cgi?op=read');
is($r->status, 200, 'crypto: the same id under /msm/ (no passphrase): 200');
unlike($r->body, qr/PlainSecret/, 'crypto: ... and no plaintext there');

# a destroy replaces every copy with a tombstone (no ciphertext left behind)
$r = $c->get('/crypto/app.cgi?op=destroy');
ok(MsmTest::wait_until(sub { !grep { (($mc{$_}->copy($sid) || {})->{kind} // '') ne 'D' } $p, $b },
                       timeout => 5), 'crypto: destroy replaces primary and backup with tombstones');
