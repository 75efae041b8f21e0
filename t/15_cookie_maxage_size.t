# The cookie and SessionMaxAge, and MsmMaxSessionSize.
#  /msm-maxage/ (SessionMaxAge 60, MsmCookieName MSMSESSION path=/ httponly):
#   - the cookie carries Max-Age=60, path=/ and HttpOnly;
#   - an unchanged session is not written again on the next request (cmd_set delta 0),
#     but once mod_session's expiry has moved by a tenth of SessionMaxAge (6 s) it is
#     (README "Written only when modified"), so that it never expires while in use.
#  An extra httpd with MsmMaxSessionSize 2048: a 3000-byte session is refused
#  (nothing in memcached, MSM00106 naming the session by its tag, the request still
#  answers 200); a 1000-byte session works. Copies are "MSM1 S <version> <written>
#  <primary>\n<mod_session string>" under t:<hex> (MsmTest::parse_copy).
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Time::HiRes qw(time sleep);

plan tests => 41, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my %port = (n1 => 21301, n2 => 21302, n3 => 21303);
my %mc = map { $_ => MsmTest::memcached(port => $port{$_}) } sort keys %port;
my %next = (n1 => 'n2', n2 => 'n3', n3 => 'n1');
my $COOKIE = qr/^([0-9a-f]{32})-(n[123])$/;

ok(MsmTest::wait_nodes_live([qw(n1 n2 n3)], timeout => 10), 'n1-n3 live for mod_msm');

sub url_decode { my $s = shift // ''; $s =~ tr/+/ /; $s =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge; $s }
sub msm_cookies { grep { /^MSMSESSION=/ } $_[0]->set_cookies }

# ---------------------------------------------------------------- SessionMaxAge 60
my $c = MsmTest::client();
my $t_create = time;
my $r = $c->get('/msm-maxage/app.cgi?op=set&k=a&v=1');
is($r->status, 200, 'maxage: create 200') or diag($r->dump);
my @sc = $r->set_cookies;
is(scalar(@sc), 1, 'maxage: exactly one Set-Cookie') or diag(join "\n", @sc);
my $sc = $sc[0] // '';
diag("Set-Cookie: $sc");
my $sid = $r->cookie('MSMSESSION') // '';
like($sid, $COOKIE, "maxage: cookie value $sid");
like($sc, qr/;\s*Max-Age=60(?:;|$)/, 'maxage: the cookie carries Max-Age=60');
like($sc, qr/;\s*path=\/(?:;|$)/, 'cookie attribute path=/ (MsmCookieName ... path=/)');
like($sc, qr/;\s*HttpOnly(?:;|$)/, 'cookie attribute HttpOnly (MsmCookieName ... httponly)');
unlike($sc, qr/;\s*(?:secure|domain=|SameSite)/i, 'no attribute that was not configured');
my ($hex, $p) = $sid =~ $COOKIE;
$p //= 'n1';
my $key = MsmTest::session_key($sid);
my $stored = $mc{$p}->get($key) // '';          # the whole copy, header included
my $payload = (MsmTest::parse_copy($stored) || {})->{payload} // '';
my %entries = map { my ($k, $v) = split /=/, $_, 2; (url_decode($k) => url_decode($v)) } split /&/, $payload;
is($entries{a}, 1, 'stored session holds a=1');
like($entries{expiry} // '', qr/^\d+$/, "stored session holds mod_session's expiry entry");
my $b = $next{$p};
ok(MsmTest::wait_until(sub { (($mc{$b}->copy($sid) || {})->{primary} // '') eq $p }, timeout => 5),
   'backup written');

# the next request right away: unchanged, not written; the cookie slides (Max-Age again)
my $s0 = MsmTest::mc_ops_settled(\%mc, quiet => 0.2);
$r = $c->get('/msm-maxage/app.cgi?op=read');
my $d = MsmTest::mc_ops_delta($s0, MsmTest::mc_ops_settled(\%mc, quiet => 0.3));
is_deeply($r->session, { a => 1 }, 'maxage: read back');
is($d->{_sum}{set}, 0, 'maxage: unchanged session, next request: cmd_set delta 0')
    or diag(MsmTest::mc_ops_str($d));
is($d->{$p}{touch}, 1, 'maxage: ... one touch (gats) on the primary');
my @sc2 = msm_cookies($r);
# with SessionMaxAge the cookie slides: every response of a session sends it
# again with Max-Age (src/msm_copy.c msm_decide_cookie, sliding_max_age)
is(scalar(@sc2), 1, 'maxage: exactly one Set-Cookie on a read (the cookie slides)') or diag(join "\n", @sc2);
like($sc2[0] // '', qr/;\s*Max-Age=60(?:;|$)/, 'maxage: the cookie sent on a read carries Max-Age=60 too');
is($r->cookie('MSMSESSION'), $sid, 'maxage: same id');

# a few more reads inside the first tenth of the max age: still no write
$s0 = MsmTest::mc_ops_settled(\%mc, quiet => 0.1);
my $reads = 0;
while (time - $t_create < 4.0 && $reads < 5) {
    $c->get('/msm-maxage/app.cgi?op=read');
    $reads++;
    sleep 0.5;
}
$d = MsmTest::mc_ops_delta($s0, MsmTest::mc_ops_settled(\%mc, quiet => 0.3));
is($d->{_sum}{set}, 0, sprintf('maxage: %d more reads within %.1f s of the write: no write',
                                $reads, time - $t_create))
    or diag(MsmTest::mc_ops_str($d));
is($mc{$p}->get($key), $stored, 'maxage: the stored value (and its expiry) is unchanged');

# > 6 s (a tenth of SessionMaxAge 60) after the last write: written again (bounded wait <= 8 s)
my $wait = $t_create + 6.5 - time;
sleep $wait if $wait > 0;
$s0 = MsmTest::mc_ops_settled(\%mc, quiet => 0.1);
$r = $c->get('/msm-maxage/app.cgi?op=read');
MsmTest::wait_until(sub { MsmTest::mc_ops_delta($s0, MsmTest::mc_ops(\%mc))->{$b}{set} >= 1 },
                    timeout => 3);
$d = MsmTest::mc_ops_delta($s0, MsmTest::mc_ops_settled(\%mc, quiet => 0.3));
my $since = time - $t_create;
cmp_ok($since, '<=', 8 + 1, sprintf('(%.1f s after the write)', $since));
is_deeply($r->session, { a => 1 }, 'maxage: content unchanged');
is($d->{$p}{set}, 1, 'maxage: once the expiry moved by >= 6 s, the session is written again (primary)')
    or diag(MsmTest::mc_ops_str($d));
is($d->{$b}{set}, 1, 'maxage: ... and its backup') or diag(MsmTest::mc_ops_str($d));
my $stored2 = ($mc{$p}->copy($sid) || {})->{payload} // '';
my ($exp1) = $payload =~ /(?:^|&)expiry=(\d+)/;
my ($exp2) = $stored2 =~ /(?:^|&)expiry=(\d+)/;
ok($exp1 && $exp2 && $exp2 - $exp1 >= 6_000_000,
   sprintf('maxage: the stored expiry moved by %.1f s', (($exp2 // 0) - ($exp1 // 0)) / 1e6));
like($r->cookie('MSMSESSION') // '', qr/^\Q$sid\E$/, 'maxage: same id after the rewrite');

$s0 = MsmTest::mc_ops_settled(\%mc, quiet => 0.1);
$c->get('/msm-maxage/app.cgi?op=read');
$d = MsmTest::mc_ops_delta($s0, MsmTest::mc_ops_settled(\%mc, quiet => 0.3));
is($d->{_sum}{set}, 0, 'maxage: the request right after the rewrite does not write again')
    or diag(MsmTest::mc_ops_str($d));

$r = $c->get('/msm-maxage/app.cgi?op=destroy');
like(join(' ', msm_cookies($r)), qr/^MSMSESSION=;.*Max-Age=0/i, 'maxage: destroy clears the cookie');

# ---------------------------------------------------------------- MsmMaxSessionSize 2048
my $h = MsmTest::httpd(port => 21321, name => 't15-size', conf => <<'EOF');
MsmNodes n1:127.0.0.1:21301 n2:127.0.0.1:21302 n3:127.0.0.1:21303
MsmKeyPrefix sz:
MsmOperationTimeout 500
MsmNodeRetry 1
MsmMaxSessionSize 2048
<Location /msm/>
    @APP_SESSION@
</Location>
EOF
sub sz_keys { map { my $n = $_; map { "$n:$_" } grep { /^sz:/ } $mc{$n}->keys } sort keys %mc }
my $hc = MsmTest::client(base => $h->url);
my $big = 'x' x 3000;
my $mark = MsmTest::log_mark($h->error_log);
$r = $hc->get("/msm/app.cgi?op=set&k=big&v=$big");
is($r->status, 200, 'size 2048: new session of 3000 bytes: still 200') or diag($r->dump);
is(scalar(msm_cookies($r)), 0, 'size 2048: ... refused: no cookie');
sleep 0.3;
is_deeply([sz_keys()], [], 'size 2048: ... nothing in memcached');
my $log = MsmTest::log_since($mark);
like($log, qr/MSM00106/, 'size 2048: MSM00106 logged') or diag($log);

my $mid = 'y' x 1000;
$r = $hc->get("/msm/app.cgi?op=set&k=big&v=$mid");
is($r->status, 200, 'size 2048: 1000 bytes: 200');
my $ssid = $r->cookie('MSMSESSION') // '';
like($ssid, $COOKIE, "size 2048: 1000 bytes: session created ($ssid)");
my (undef, $sp) = $ssid =~ $COOKIE;
$sp //= 'n1';
my $sraw = $mc{$sp}->get(MsmTest::session_key($ssid, 'sz:'));
is((MsmTest::parse_copy($sraw) || {})->{payload}, "big=$mid", 'size 2048: 1000 bytes: stored in memcached');
is_deeply($hc->get('/msm/app.cgi?op=read')->session, { big => $mid }, 'size 2048: 1000 bytes: read back');

$mark = MsmTest::log_mark($h->error_log);
$r = $hc->get("/msm/app.cgi?op=set&k=big&v=$big");
is($r->status, 200, 'size 2048: growing the session to 3000 bytes: still 200');
$log = MsmTest::log_since($mark);
my $stag = MsmTest::session_tag($ssid) // 'none';
ok($log =~ /MSM00106: session $stag not saved/ && !MsmTest::ids_in($log),
   "size 2048: MSM00106 names the session by its tag $stag (not by its id)")
    or diag($log);
is($mc{$sp}->get(MsmTest::session_key($ssid, 'sz:')), $sraw,
   'size 2048: the stored session is not truncated nor replaced (the same copy)');
is_deeply($hc->get('/msm/app.cgi?op=read')->session, { big => $mid },
          'size 2048: the session still reads as its last accepted version');
unlike(join("\n", map { $mc{$_}->get(MsmTest::session_key($ssid, 'sz:')) // '' } sort keys %mc), qr/x{100}/,
       'size 2048: no part of the 3000-byte value reached memcached');
unlike(MsmTest::log_since([$h->error_log, 0]), qr/exit signal|Segmentation/, 'size 2048: no crash');
$h->stop;
