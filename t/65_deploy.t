# The deployment configurations of README "Deployment" (conf/deploy/*.conf),
# each Included unchanged by a real httpd and exercised:
#   1. event-php-fpm.conf    mpm_event, the app in php-fpm (mod_proxy_fcgi):
#                            create, read, update, destroy; copy and backup
#   2. prefork-mod_php.conf  mpm_prefork, the app in mod_php: the same
#   3. auth-form.conf        mod_auth_form login/logout, MsmEncryptKeyFile,
#                            MsmRegenerateOnLogin, the cookie's attributes
#   4. balancer-front.conf + balancer-backend.conf: a front, back ends with
#                            routes a and b (sticky); a session sticks to its
#                            route, and moves to the other back end when its
#                            own is stopped (takeover)
# and a missing required Define stops `httpd -t` with the file's message.
#
# Each httpd's configuration is what Debian gives a site (t/65_deploy.t's
# debian_conf): the modules of Debian's default installation, changed as the
# file's header says (its "a2dismod ..." and "a2enmod ..." lines, resolved
# from /etc/apache2/mods-available with their "# Depends:" and "# Conflicts:"
# as a2enmod does; msm from this build, conf/msm.load and conf/msm.conf),
# each module's .conf, Listen (ports.conf), the <Directory /> of apache2.conf,
# APACHE_LOG_DIR (envvars), then "Define" lines for the site and the file.
# So a module missing from a header fails here.
#
# The app is t/htdocs/msm/app.php (APP_DIR = t/htdocs/msm). php-fpm: the one of
# scripts/test.sh --fpm (MSM_TEST_FPM_SOCKET), else one started here (a static
# pool of 4 on a socket in t/tmp, ended by pid). mod_php: needs Debian's
# libapache2-mod-php (php8.2.load).
#
# Ports 21630-21649: memcached n1 21630, n2 21631; httpds 21632 (event +
# php-fpm), 21633 (prefork + mod_php), 21634 (auth-form); balancer: memcached
# m1 21640, m2 21641, back ends a 21642, b 21643, front 21644.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Digest::SHA ();
use File::Path qw(make_path remove_tree);
use File::Spec::Functions qw(catfile catdir);
use MIME::Base64 ();
use Time::HiRes qw(time sleep);

plan tests => 62, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my $TOP     = MsmTest::top_dir();
my $DEPLOY  = catdir($TOP, 'conf', 'deploy');
my $APP_DIR = catdir(MsmTest::t_dir(), 'htdocs', 'msm');
my $MODS    = '/etc/apache2/mods-available';
my $NODES   = 'n1:127.0.0.1:21630 n2:127.0.0.1:21631';
my $COOKIE  = 'APPSESSION';      # the files' default MSM_COOKIE
my $PREFIX  = 'app:';            # the files' default MSM_KEY_PREFIX

# ---------------------------------------------------------------- Debian's layout

# the modules a fresh Debian 12 apache2 enables (mods-enabled)
my @DEBIAN_MODULES = qw(access_compat alias auth_basic authn_core authn_file authz_core
    authz_host authz_user autoindex deflate dir env filter mime mpm_event negotiation
    reqtimeout setenvif status);

sub load_file { $_[0] eq 'msm' ? catfile($TOP, 'conf', 'msm.load') : "$MODS/$_[0].load" }
sub conf_file { $_[0] eq 'msm' ? catfile($TOP, 'conf', 'msm.conf') : "$MODS/$_[0].conf" }

# "# Depends: a b" / "# Conflicts: c" of a module's .load
sub load_header {
    my ($m, $what) = @_;
    open my $fh, '<', load_file($m) or return;
    my @r;
    while (<$fh>) { push @r, split ' ', $1 if /^#\s*\Q$what\E:\s*(.*)$/ }
    return @r;
}

# the modules enabled after the file's header: its lines "#   a2dismod ..." and
# "#   a2enmod ..." (indented: the commands, not prose), in order, with
# dependencies and conflicts as a2enmod has them; dies with the reason
sub deploy_modules {
    my $file = shift;
    my %on = map { $_ => 1 } @DEBIAN_MODULES;
    my $enable;
    $enable = sub {
        my $m = shift;
        return if $on{$m};
        -e load_file($m) or die "a2enmod $m: no $m.load\n";
        for my $c (load_header($m, 'Conflicts')) {
            die "a2enmod $m: $c is enabled (a2dismod $c first)\n" if $on{$c};
        }
        $enable->($_) for load_header($m, 'Depends');
        $on{$m} = 1;
    };
    open my $fh, '<', $file or die "$file: $!\n";
    my $commands = 0;
    while (<$fh>) {
        last unless /^#/;
        next unless /^#\s{2,}(a2enmod|a2dismod)((?:\s+[\w.-]+)+)\s*$/;
        my ($cmd, @m) = ($1, split ' ', $2);
        $commands++;
        if ($cmd eq 'a2dismod') { delete @on{@m} }
        else                    { $enable->($_) for @m }
    }
    die "no a2enmod line in the header of $file\n" unless $commands;
    my @mpm = grep { /^mpm_/ } keys %on;
    die "MPMs enabled: @mpm\n" unless @mpm == 1;
    return sort keys %on;
}

sub load_lines {
    my $m = shift;
    return qq{LoadModule msm_module "} . catfile($TOP, '.libs', 'mod_msm.so') . qq{"\n} if $m eq 'msm';
    open my $fh, '<', load_file($m) or die load_file($m) . ": $!\n";
    return join '', grep { /^\s*LoadModule\s/ } <$fh>;
}

# an httpd configuration as Debian builds it for a site: apache2.conf with
# mods-enabled (*.load, *.conf), ports.conf, conf-enabled (the Define lines)
# and the site (the deploy file, unchanged)
sub debian_conf {
    my ($file, $port, @defines) = @_;
    my @mods = deploy_modules(catfile($DEPLOY, $file));
    my $c = <<'EOF';
# t/65_deploy.t: Debian's apache2.conf for one site
PidFile "@DIR@/logs/httpd.pid"
DefaultRuntimeDir "@DIR@/logs"
ErrorLog "@DIR@/logs/error_log"
LogLevel warn
Timeout 300
KeepAlive On
MaxKeepAliveRequests 100
KeepAliveTimeout 5
HostnameLookups Off
EOF
    $c .= load_lines($_) for @mods;
    $c .= qq{Include "} . conf_file($_) . qq{"\n} for grep { -e conf_file($_) } @mods;
    $c .= <<"EOF";
Listen 127.0.0.1:$port
<Directory />
    Options FollowSymLinks
    AllowOverride None
    Require all denied
</Directory>
AccessFileName .htaccess
<FilesMatch "^\\.ht">
    Require all denied
</FilesMatch>
LogFormat "%h %l %u %t \\"%r\\" %>s %O \\"%{Referer}i\\" \\"%{User-Agent}i\\"" combined
# /etc/apache2/envvars
Define APACHE_LOG_DIR "\@DIR\@/logs"
# the site's settings (conf-enabled/)
EOF
    while (my ($k, $v) = splice @defines, 0, 2) { $c .= qq{Define $k "$v"\n} }
    $c .= qq{# the site (sites-enabled/)\nInclude "} . catfile($DEPLOY, $file) . qq{"\n};
    return ($c, @mods);
}

# an httpd for a deploy file, or undef (with a diag) when it does not come up
sub deploy_httpd {
    my ($name, $file, $port, @defines) = @_;
    my $h = eval {
        my ($conf) = debian_conf($file, $port, @defines);
        MsmTest::httpd(port => $port, name => "t65-$name", conf => $conf, preamble => 0);
    };
    diag("$file: $@") unless $h;
    return $h;
}

# ---------------------------------------------------------------- php-fpm

my $FPM_SOCKET = $ENV{MSM_TEST_FPM_SOCKET};
if (!$FPM_SOCKET) {
    my ($bin) = sort { $b cmp $a } glob('/usr/sbin/php-fpm*');
    if ($bin && -x $bin) {
        my $d = catdir(MsmTest::tmp_dir(), "fpm65-$$");
        remove_tree($d);
        make_path($d);
        my $sock = "$d/fpm.sock";
        open my $fh, '>', "$d/php-fpm.conf" or die "$d/php-fpm.conf: $!";
        print $fh <<"EOF";
[global]
pid = $d/php-fpm.pid
error_log = $d/php-fpm.log
daemonize = no
[app65]
listen = $sock
listen.mode = 0660
pm = static
pm.max_children = 4
catch_workers_output = yes
EOF
        close $fh;
        my $fpm = eval {
            MsmTest::process(name => 'fpm65', cmd => [$bin, '-F', '-y', "$d/php-fpm.conf",
                                                       ($> == 0 ? '-R' : ())],
                             ready => sub { -S $sock }, timeout => 15)
        };
        diag("php-fpm ($bin): $@") unless $fpm;
        $FPM_SOCKET = $sock if $fpm;
    }
}
diag('php-fpm: ' . ($ENV{MSM_TEST_FPM_SOCKET} ? "scripts/test.sh --fpm's, $FPM_SOCKET"
                    : $FPM_SOCKET ? "this test's, $FPM_SOCKET" : 'none (/usr/sbin/php-fpm*)'));

# ---------------------------------------------------------------- helpers

my %mc = (n1 => MsmTest::memcached(port => 21630), n2 => MsmTest::memcached(port => 21631));
my %other = (n1 => 'n2', n2 => 'n1', m1 => 'm2', m2 => 'm1');

sub cookie_ok {
    my ($r, $node_re) = @_;
    my ($sc) = grep { /^\Q$COOKIE\E=/ } $r->set_cookies;
    my ($n, $v, $a) = MsmTest::cookie_attrs($sc);
    return ($v // '') =~ /^[0-9a-f]{32}-$node_re$/ ? ($v, $a) : ();
}
sub cleared {
    my $r = shift;
    my ($sc) = grep { /^\Q$COOKIE\E=/ } $r->set_cookies;
    my (undef, $v, $a) = MsmTest::cookie_attrs($sc);
    return defined $sc && $v eq '' && ($a->{'max-age'} // '') eq '0';
}

# create, read, update, destroy through app.php; the copies on the nodes
# (12 assertions)
sub crud {
    my ($what, $h, $app, %o) = @_;
    my $c = MsmTest::client(base => $h->url);
    my $r = $c->get('/app.php?op=set&k=user&v=alice');
    ok($r->status == 200 && ($r->field('app') // '') eq $app
       && (($r->session // {})->{user} // '') eq 'alice',
       "$what: a session created through app.php, in $app") or diag($r->dump);
    my ($sid, $attrs) = cookie_ok($r, '(n1|n2)');
    is_deeply([$sid ? 1 : 0, $attrs], [1, { path => '/', httponly => 1, secure => 1, samesite => 'Lax' }],
              "$what: $COOKIE=<32 hex>-<node>; Path=/; HttpOnly; Secure; SameSite=Lax (MSM_COOKIE_ATTRS)")
        or diag(join "\n", $r->set_cookies);
    ok(!defined $r->header('X-Replace-Session'), "$what: X-Replace-Session does not reach the client");
    $o{check}->($r) if $o{check};
    $sid //= ('0' x 32) . '-n1';     # (failed above) the checks below fail, not die
    my $node = MsmTest::cookie_node($sid);

    $r = $c->get('/app.php?op=read');
    is_deeply([$r->status, $r->field('session_in')], [200, { user => 'alice' }],
              "$what: read: the app gets the session (HTTP_SESSION)");
    # HTTP_SESSION is mod_session's: a request header "Session" does not forge it
    my $forged = { session => 'user=mallory&admin=1' };
    my $anon = MsmTest::client(base => $h->url);
    is_deeply([$c->get('/app.php?op=read', headers => $forged)->field('session_in'),
               $anon->get('/app.php?op=read', headers => $forged)->field('session_in')],
              [{ user => 'alice' }, {}],
              "$what: a forged 'Session:' request header reaches the app neither with nor without a cookie");
    $c->get('/app.php?op=incr&k=n');
    $r = $c->get('/app.php?op=incr&k=n');
    is($r->field('value'), 2, "$what: two updates (incr) -> 2");
    is_deeply($c->get('/app.php?op=read')->session, { user => 'alice', n => 2 },
              "$what: read after the updates: user=alice, n=2");

    my $pri = $mc{$node}->copy($sid, $PREFIX) || {};
    ok(($pri->{kind} // '') eq 'S' && ($pri->{primary} // '') eq $node
       && ($pri->{payload} // '') =~ /(^|&)n=2(&|$)/ && $pri->{payload} =~ /(^|&)user=alice(&|$)/,
       "$what: the copy on $node (the cookie's node, key $PREFIX<hex>) holds user=alice, n=2")
        or diag(explain $pri);
    my $bak;
    MsmTest::wait_until(sub {
        $bak = $mc{ $other{$node} }->copy($sid, $PREFIX) || {};
        ($bak->{version} // -1) == ($pri->{version} // -2);
    }, timeout => 5);
    ok(($bak->{primary} // '') eq $node && ($bak->{payload} // '') eq ($pri->{payload} // 'x'),
       "$what: the backup on $other{$node}: the same version and content (MsmBackup)")
        or diag(explain $bak);

    $r = $c->get('/app.php?op=destroy');
    ok($r->status == 200 && cleared($r), "$what: destroy: the cookie is cleared (Max-Age=0)")
        or diag($r->dump);
    my @left = grep { ($_->{kind} // '') ne 'D' } map { $mc{$_}->copy($sid, $PREFIX) || {} } qw(n1 n2);
    is(scalar @left, 0, "$what: destroy: tombstones (MSM1 D) on both nodes") or diag(explain \@left);
    my $old = MsmTest::client(base => $h->url);
    $old->cookie($COOKIE => $sid);
    is_deeply($old->get('/app.php?op=read')->session, {}, "$what: the old cookie opens nothing");
    return $sid;
}

# ---------------------------------------------------------------- 1. event + php-fpm

SKIP: {
    skip 'no php-fpm', 14 unless $FPM_SOCKET;
    my $h = deploy_httpd('fpm', 'event-php-fpm.conf', 21632, MSM_NODES => $NODES,
                         SITE_PORT => 21632, APP_DIR => $APP_DIR, FPM_SOCKET => $FPM_SOCKET);
    ok($h, 'event-php-fpm.conf: httpd up (mpm_event; a2enmod proxy_fcgi session msm)');
    skip 'no httpd', 13 unless $h;
    ok(grep({ $_ eq 'mpm_event' } deploy_modules(catfile($DEPLOY, 'event-php-fpm.conf'))),
       'event-php-fpm.conf: the MPM is event (Debian\'s default)');
    crud('event-php-fpm', $h, 'php-fpm');
}

# ---------------------------------------------------------------- 2. prefork + mod_php

SKIP: {
    my ($php) = map { /LoadModule\s+\S+\s+"?([^"\s]+)/ ? $1 : () } eval { load_lines('php8.2') };
    skip 'no mod_php (Debian package libapache2-mod-php8.2)', 15 unless $php && -e $php;
    # scripts/test.sh --asan preloads the ASan runtime into httpd: PHP then
    # dlopens opcache with RTLD_DEEPBIND, which that runtime refuses (abort)
    skip 'mod_php cannot run under the ASan runtime (RTLD_DEEPBIND)', 15
        if MsmTest::httpd_bin() =~ /asan/;
    my $h = deploy_httpd('modphp', 'prefork-mod_php.conf', 21633, MSM_NODES => $NODES,
                         SITE_PORT => 21633, APP_DIR => $APP_DIR);
    ok($h, 'prefork-mod_php.conf: httpd up (a2dismod mpm_event; a2enmod mpm_prefork php8.2 session msm)');
    skip 'no httpd', 14 unless $h;
    my @mods = deploy_modules(catfile($DEPLOY, 'prefork-mod_php.conf'));
    ok((grep({ $_ eq 'mpm_prefork' } @mods) && !grep({ $_ eq 'mpm_event' } @mods)),
       'prefork-mod_php.conf: the MPM is prefork');
    crud('prefork-mod_php', $h, 'mod_php', check => sub {
        my $r = shift;
        my $pid = $r->field('pid') // 0;
        ok(scalar(grep { $_ == $pid } $h->children), 'prefork-mod_php: PHP ran inside an httpd child (its pid)')
            or diag("pid $pid, children " . join(' ', $h->children));
    });
}

# ---------------------------------------------------------------- 3. auth-form

SKIP: {
    skip 'no php-fpm', 18 unless $FPM_SOCKET;
    my %pw = (alice => 'alice-pw-' . MsmTest::random_hex(), mallory => 'mallory-pw-' . MsmTest::random_hex());
    # {SHA} (apr's SHA-1 format): quick for the test; the file's comment says htpasswd -B
    my $users = MsmTest::key_file('65-users', join '', map {
        "$_:{SHA}" . MIME::Base64::encode_base64(Digest::SHA::sha1($pw{$_}), '') . "\n" } sort keys %pw);
    my $key = MsmTest::encrypt_key();
    my $keys = MsmTest::key_file('65-keys', "$key\n");
    my $h = deploy_httpd('auth', 'auth-form.conf', 21634, MSM_NODES => $NODES, SITE_PORT => 21634,
                         APP_DIR => $APP_DIR, FPM_SOCKET => $FPM_SOCKET, AUTH_USER_FILE => $users,
                         MSM_KEY_FILE => $keys);
    ok($h, 'auth-form.conf: httpd up (a2enmod proxy_fcgi auth_form request session msm)');
    skip 'no httpd', 17 unless $h;
    my $url = $h->url;

    my $anon = MsmTest::client(base => $url);
    my $r = $anon->get('/app.php?op=read');
    ok($r->status == 302 && ($r->header('Location') // '') =~ m{/login\.html$} && !$r->set_cookies,
       'anonymous: the app redirects to LOGIN_PAGE, no cookie') or diag($r->dump);
    is($anon->get('/login.html')->status, 200, 'anonymous: the login page is public');

    my $login = sub {
        my ($c, $user, $pass) = @_;
        return $c->post('/auth/dologin', { httpd_username => $user, httpd_password => $pass });
    };
    $r = $login->($anon, 'mallory', 'wrong');
    ok($r->status == 302 && ($r->header('Location') // '') =~ m{/login\.html\?failed$}
       && !grep({ /^\Q$COOKIE\E=/ } $r->set_cookies),
       'a wrong password: back to the login page, no session cookie') or diag($r->dump);
    is($anon->get('/app.php?op=read')->status, 302, 'a wrong password: the app still asks for a login');

    my $mal = MsmTest::client(base => $url);
    $r = $login->($mal, 'mallory', $pw{mallory});
    my ($msid, $attrs) = cookie_ok($r, '(n1|n2)');
    ok($r->status == 302 && ($r->header('Location') // '') =~ m{/$} && $msid,
       'mallory logs in: redirect to AFTER_LOGIN, a session cookie') or diag($r->dump);
    is_deeply($attrs, { path => '/', httponly => 1, secure => 1, samesite => 'Lax' },
              'the login cookie: Path=/; HttpOnly; Secure; SameSite=Lax');
    $r = $mal->get('/app.php?op=env');
    my $env = $r->field('env') || {};
    ok($r->status == 200 && ($env->{REMOTE_USER} // '') eq 'mallory',
       'mallory: the protected app answers 200, REMOTE_USER=mallory') or diag($r->dump);
    ok(!exists $env->{HTTP_SESSION} && index($r->body, $pw{mallory}) < 0,
       'the app gets neither the session nor the password (SessionEnv Off)');

    $msid //= ('0' x 32) . '-n1';
    my $mnode = MsmTest::cookie_node($msid);
    my $mhex = MsmTest::cookie_hex($msid);
    MsmTest::wait_until(sub { $mc{ $other{$mnode} }->get($PREFIX . $mhex) }, timeout => 5);
    my @vals = map { $mc{$_}->get($PREFIX . $mhex) } qw(n1 n2);
    my $kid = MsmTest::key_id($key);
    ok(@vals == 2 && !grep({ !defined $_ || (MsmTest::sealed_id($_) // '') ne $kid } @vals),
       "the session's primary and backup are sealed with MSM_KEY_FILE's key ($kid)")
        or diag(explain [map { defined $_ ? substr($_, 0, 40) : undef } @vals]);
    ok(!grep({ defined $_ && (index($_, $pw{mallory}) >= 0 || index($_, 'mallory') >= 0) } @vals),
       'memcached holds neither the password nor the user in clear');

    # session fixation: alice's browser got mallory's cookie; alice logs in
    my $alice = MsmTest::client(base => $url);
    $alice->cookie($COOKIE => $msid);
    $r = $login->($alice, 'alice', $pw{alice});
    my ($asid) = cookie_ok($r, '(n1|n2)');
    ok($r->status == 302 && $asid && MsmTest::cookie_hex($asid) ne $mhex,
       "alice logs in with mallory's cookie: a new session id (MsmRegenerateOnLogin)")
        or diag($r->dump);
    $r = $alice->get('/app.php?op=env');
    is((($r->field('env') || {})->{REMOTE_USER}) // '', 'alice', 'alice: REMOTE_USER=alice');
    is($mal->get('/app.php?op=read')->status, 302, "mallory's id is destroyed with alice's login: login page");

    $asid //= ('0' x 32) . '-n1';
    my $ahex = MsmTest::cookie_hex($asid);
    $r = $alice->get('/auth/logout');
    ok($r->status == 307 && ($r->header('Location') // '') =~ m{/login\.html$} && cleared($r),
       'alice logs out: redirect to LOGIN_PAGE, the cookie cleared') or diag($r->dump);
    # a sealed tombstone: "MSME" <key id> <nonce> + the sealed "MSM1 D <16> <16> -\n" + tag
    my $tomb = 36 + length MsmTest::make_copy(kind => 'D');
    my @after = map { $mc{$_}->get($PREFIX . $ahex) } qw(n1 n2);
    ok(!grep({ defined $_ && !((MsmTest::sealed_id($_) // '') eq $kid && length $_ == $tomb) } @after),
       "logout: on both nodes the session is a sealed tombstone ($tomb bytes) or gone")
        or diag(explain [map { defined $_ ? length $_ : undef } @after]);
    my $replay = MsmTest::client(base => $url);
    $replay->cookie($COOKIE => $asid);
    is($replay->get('/app.php?op=read')->status, 302, "logout: alice's old cookie opens nothing (login page)");
    is($alice->get('/app.php?op=read')->status, 302, 'logout: alice must log in again');
}

# ---------------------------------------------------------------- 4. balancer

SKIP: {
    skip 'no php-fpm', 14 unless $FPM_SOCKET;
    my %m = (m1 => MsmTest::memcached(port => 21640), m2 => MsmTest::memcached(port => 21641));
    my %port = (a => 21642, b => 21643);
    my %be;
    for my $route (qw(a b)) {
        $be{$route} = deploy_httpd("be-$route", 'balancer-backend.conf', $port{$route},
            MSM_NODES => 'm1:127.0.0.1:21640 m2:127.0.0.1:21641', MSM_ROUTE => $route,
            SITE_PORT => $port{$route}, APP_DIR => $APP_DIR, FPM_SOCKET => $FPM_SOCKET);
    }
    my $front = deploy_httpd('front', 'balancer-front.conf', 21644, SITE_PORT => 21644,
        BACKEND1 => '127.0.0.1:21642', ROUTE1 => 'a', BACKEND2 => '127.0.0.1:21643', ROUTE2 => 'b');
    ok($be{a} && $be{b} && $front,
       'balancer: back ends a, b (balancer-backend.conf) and the front (balancer-front.conf) up');
    skip 'no httpds', 13 unless $be{a} && $be{b} && $front;

    my $c = MsmTest::client(base => $front->url);
    my $r = $c->get('/app.php?op=set&k=user&v=alice');
    my ($sid) = grep { /^[0-9a-f]{32}-m[12]\.[ab]$/ } ($c->cookie($COOKIE) // '');
    ok($r->status == 200 && (($r->session // {})->{user} // '') eq 'alice' && $sid,
       'through the front: a session, cookie <32 hex>-<node>.<route>') or diag($r->dump);
    $sid //= ('0' x 32) . '-m1.a';
    my ($hex, $node, $route) = $sid =~ /^(\w+)-(m[12])\.([ab])$/;
    $route //= 'a';
    my $away = $route eq 'a' ? 'b' : 'a';
    my %c0 = map { $_ => MsmTest::counters($be{$_}->url) } qw(a b);
    my $reads = 0;
    for (1 .. 5) {
        my $rr = $c->get('/app.php?op=read');
        $reads++ if $rr->status == 200 && (($rr->session // {})->{user} // '') eq 'alice';
    }
    is($reads, 5, 'five reads through the front: the session every time');
    my %d = map { $_ => MsmTest::delta($c0{$_}, MsmTest::counters($be{$_}->url)) } qw(a b);
    ok(($d{$route}{local_hits} // 0) >= 5, "sticky: back end $route served them from its local tier")
        or diag(explain \%d);
    ok(!grep({ $d{$away}{$_} } qw(local_hits load_hit load_miss created)),
       "sticky: back end $away saw none of them") or diag(explain $d{$away});
    is(($m{$node}->copy($sid, $PREFIX) || {})->{route} // '', $route,
       "the copy in memcached ($node) names route $route");
    is($c->get('/app.php?op=incr&k=n')->field('value'), 1, "an update on back end $route (n=1)");

    $be{$route}->stop;
    ok(!MsmTest::port_open($port{$route}), "back end $route stopped");
    my $t0 = MsmTest::counters($be{$away}->url);
    $r = $c->get('/app.php?op=read');
    my $new = $c->cookie($COOKIE) // '';
    is_deeply([$r->status, $r->session], [200, { user => 'alice', n => 1 }],
              "after the stop: back end $away serves the session, unchanged") or diag($r->dump);
    is($new, "$hex-$node.$away", "the cookie moves to route $away (same id and node)");
    is(MsmTest::delta($t0, MsmTest::counters($be{$away}->url))->{takeovers} // 0, 1,
       "back end $away counts one takeover");
    ok(MsmTest::wait_until(sub { (($m{$node}->copy($sid, $PREFIX) || {})->{route} // '') eq $away }, timeout => 5),
       "the copy in memcached now names route $away");
    is($c->get('/app.php?op=incr&k=n')->field('value'), 2, "an update on back end $away (n=2)");
    is_deeply($c->get('/app.php?op=read')->session, { user => 'alice', n => 2 },
              "read back through the front: user=alice, n=2");
}

# ---------------------------------------------------------------- required Defines

{
    my $d = catdir(MsmTest::tmp_dir(), "t65-configtest-$$");
    remove_tree($d);
    make_path("$d/logs");
    my ($conf) = debian_conf('balancer-backend.conf', 21645, MSM_NODES => $NODES);
    $conf =~ s/\@DIR\@/$d/g;
    open my $fh, '>', "$d/httpd.conf" or die "$d/httpd.conf: $!";
    print $fh $conf;
    close $fh;
    my $bin = MsmTest::httpd_bin();
    my $out = `'$bin' -t -d '$d' -f '$d/httpd.conf' 2>&1`;
    my $rc = $? >> 8;
    ok($rc != 0 && $out =~ /Define MSM_ROUTE first/,
       'balancer-backend.conf without MSM_ROUTE: httpd -t fails with the file\'s message')
        or diag("exit $rc: $out");
    remove_tree($d);
}
