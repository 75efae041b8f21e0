# Cookie attributes in the real Set-Cookie header (README "Directives",
# MsmCookieName name [attributes]: path=, domain=, secure, httponly,
# SameSite=Strict|Lax|None, separated by spaces or semicolons; default: HttpOnly;
# Max-Age follows SessionMaxAge). An extra httpd with one location per case;
# each header is parsed into its name, value and attributes:
#   /c-default/  MsmCookieName C0                          -> HttpOnly only
#   /c-all/      C1 path=/c-all/ domain=example.test secure SameSite=Strict
#                                                          -> exactly those, no HttpOnly
#   /c-semi/     C2 httponly;SameSite=Lax;secure           -> HttpOnly, SameSite=Lax, Secure
#   /c-maxage/   C3 SameSite=None secure httponly, SessionMaxAge 120 -> and Max-Age=120
# and the header that clears a destroyed session's cookie carries the same path
# and domain (or the browser would keep the cookie) with Max-Age=0.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;

plan tests => 19, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my $mc = MsmTest::memcached(port => 21460);
my %CASE = (
    'c-default' => ['C0', '', '', { httponly => 1 }],
    'c-all'     => ['C1', 'path=/c-all/ domain=example.test secure SameSite=Strict', '',
                    { path => '/c-all/', domain => 'example.test', secure => 1, samesite => 'Strict' }],
    'c-semi'    => ['C2', 'httponly;SameSite=Lax;secure', '',
                    { httponly => 1, samesite => 'Lax', secure => 1 }],
    'c-maxage'  => ['C3', 'SameSite=None secure httponly', 'SessionMaxAge 120',
                    { samesite => 'None', secure => 1, httponly => 1, 'max-age' => 120 }],
);
my $conf = join "\n", "MsmNodes k1:127.0.0.1:21460", 'MsmKeyPrefix c65:', 'MsmOperationTimeout 500',
    map { my ($name, $attrs, $extra) = @{ $CASE{$_} }; <<"EOF" } sort keys %CASE;
Alias /$_/ "\@T\@/htdocs/msm/"
<Location /$_/>
    Session On
    SessionEnv On
    SessionHeader X-Replace-Session
    $extra
    MsmCookieName $name $attrs
</Location>
EOF
my $h = MsmTest::httpd(port => 21461, name => 't65', conf => $conf);

for my $loc (sort keys %CASE) {
    my ($name, $attrs, $extra, $want) = @{ $CASE{$loc} };
    my $c = MsmTest::client(base => $h->url);
    my $r = $c->get("/$loc/app.cgi?op=set&k=a&v=1");
    my @sc = $r->set_cookies;
    diag("$loc: Set-Cookie: @sc");
    is(scalar @sc, 1, "$loc: one Set-Cookie header");
    my ($n, $v, $got, $order) = MsmTest::cookie_attrs($sc[0]);
    ok(($n // '') eq $name && ($v // '') =~ /^[0-9a-f]{32}-k1$/, "$loc: $name=<32 hex>-k1");
    is_deeply($got, $want, "$loc: attributes " . join('; ', @$order) . ($attrs eq '' ? ' (the default)' : " (from '$attrs')"));
    next unless $loc eq 'c-all' || $loc eq 'c-maxage';
    # the cookie that clears the session names the same cookie: same path and domain
    $c->cookie($name => $v);
    $r = $c->get("/$loc/app.cgi?op=destroy");
    my ($cn, $cv, $ca) = MsmTest::cookie_attrs(($r->set_cookies)[0]);
    diag("$loc: destroy: Set-Cookie: " . join(' ', $r->set_cookies));
    ok(($cn // '') eq $name && ($cv // 'x') eq '' && ($ca->{'max-age'} // '') eq '0',
       "$loc: destroy clears $name (empty value, Max-Age=0)");
    is_deeply([map { $ca->{$_} } qw(path domain)], [map { $want->{$_} } qw(path domain)],
              "$loc: ... with the same path and domain as the cookie it clears");
}
# a header of the location with every attribute: none spelled twice, none unknown
my $sc = MsmTest::client(base => $h->url)->get('/c-all/app.cgi?op=set&k=b&v=2');
my (undef, undef, undef, $order) = MsmTest::cookie_attrs(($sc->set_cookies)[0]);
my %seen;
is(scalar(grep { $seen{ lc $_ }++ } @$order), 0, 'no attribute twice in one header (' . join('; ', @$order) . ')');
is(scalar(grep { !/^(?:path|domain|secure|httponly|samesite|max-age)$/i } @$order), 0, 'no other attribute');
ok(!grep({ /SameSite=(?!Strict|Lax|None)/ } $sc->set_cookies), 'SameSite spelled as configured');
