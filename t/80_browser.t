# The real-world demo (demo/backend.conf.in, demo/front.conf.in, demo/htdocs) in a
# browser: three memcached, two sticky back ends (routes a, b) with mod_auth_form and
# mod_session_crypto, a mod_proxy_balancer front - rendered the way scripts/demo.sh
# renders them, on this file's ports. Debian's /usr/bin/chromium, driven by
# t/browser/login.js (playwright-core, installed by scripts/test.sh with npm ci):
#   log in as demo/demo, +1 three times; the test kills (SIGKILL) the back end that
#   served the page AND the memcached node holding the session; the browser reloads:
#   still demo, counter 3, served by the other back end; +1 -> 4.
# Screenshots: t/logs/browser/*.png. Skipped (with the reason) only when chromium or
# node is not installed or chromium cannot start here.
# Ports: memcached 21390-21392, back ends a 21393 and b 21394, front 21395.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Digest::SHA qw(sha1_base64);
use File::Copy qw(copy);
use File::Find qw(find);
use File::Path qw(make_path remove_tree);
use File::Spec::Functions qw(catfile catdir);
use IO::Select ();
use IPC::Open2 qw(open2);
use JSON::PP ();
use MIME::Base64 qw(encode_base64);
use POSIX ();
use Time::HiRes qw(time sleep);

my $CHROMIUM = '/usr/bin/chromium';
my $T = MsmTest::t_dir();
my $TOP = MsmTest::top_dir();
my $BROWSER = catdir($T, 'browser');
my ($NODE) = grep { -x } map { "$_/node" } split /:/, $ENV{PATH} // '/usr/bin';

my %MC_PORT = (m1 => 21390, m2 => 21391, m3 => 21392);
my %DEMO_MC = (21211 => 21390, 21212 => 21391, 21213 => 21392);   # demo's MsmNodes ports
my ($PORT_A, $PORT_B, $PORT_FRONT) = (21393, 21394, 21395);

my $why_skip = !MsmTest::have_msm() ? 'mod_msm is not loaded'
             : !-x $CHROMIUM        ? "$CHROMIUM is not installed (Debian package chromium)"
             : !$NODE               ? 'node is not installed (Debian package nodejs)'
             : !-f catfile($TOP, 'demo', 'backend.conf.in') ? 'demo/ is missing'
             : '';
plan skip_all => $why_skip if $why_skip;
unless (-d catdir($BROWSER, 'node_modules', 'playwright-core')) {
    plan tests => 1;
    fail("t/browser/node_modules/playwright-core is missing: scripts/test.sh runs "
         . "'npm ci' in t/browser");
    exit 0;
}

my $shots = catdir(MsmTest::logs_dir(), 'browser');
remove_tree($shots);
make_path($shots);
my $profile = catdir(MsmTest::tmp_dir(), 'browser-profile');

# ------------------------------------------------------------ node + chromium
# run login.js; returns (pid, reader, writer)
sub start_node {
    my @args = @_;
    remove_tree($profile);
    make_path($profile);
    my ($out, $in);
    local $ENV{HOME} = $ENV{HOME} && -w $ENV{HOME} ? $ENV{HOME} : MsmTest::tmp_dir();
    my $pid = open2($out, $in, $NODE, catfile($BROWSER, 'login.js'), '--profile', $profile,
                    '--chromium', $CHROMIUM, @args);
    return ($pid, $out, $in);
}
my %linebuf;
sub read_tagged {            # next line starting with one of @tags (others kept for diag)
    my ($fh, $timeout, @tags) = @_;
    my $sel = IO::Select->new($fh);
    my $deadline = time + $timeout;
    my $buf = \$linebuf{"$fh"};
    $$buf //= '';
    while (1) {
        while ($$buf =~ s/^(.*)\n//) {
            my $l = $1;
            for my $t (@tags, 'ERROR') {
                if ($l =~ /^\Q$t\E(?: (.*))?$/) {
                    my $d = defined $1 ? eval { JSON::PP->new->decode($1) } // $1 : undef;
                    return ($t, $d);
                }
            }
            diag("login.js: $l");
        }
        my $left = $deadline - time;
        return ('TIMEOUT', undef) if $left <= 0 || !$sel->can_read($left);
        my $n = sysread($fh, $$buf, 65536, length $$buf);
        return ('EOF', undef) unless $n;
    }
}
sub end_node {
    my ($pid, $timeout) = @_;
    return undef unless $pid;
    my $st;
    MsmTest::wait_until(sub { my $r = waitpid($pid, POSIX::WNOHANG()); $st = $? if $r == $pid; $r != 0 },
                        timeout => $timeout // 10);
    if (!defined $st && kill(0, $pid)) {
        my @d = MsmTest::descendant_pids($pid);
        kill 'KILL', $pid, @d;
        waitpid($pid, 0);
        $st = -1;
    }
    return $st;
}

{
    my ($pid, $out, $in) = start_node('--probe');
    my ($tag, $d) = read_tagged($out, 60, 'PROBE');
    close $in;
    end_node($pid, 10);
    unless ($tag eq 'PROBE' && ref $d eq 'HASH' && $d->{ok}) {
        plan skip_all => 'chromium cannot run here: ' . ($tag // '') . ' '
                       . (ref $d ? JSON::PP->new->canonical->encode($d) : $d // '');
    }
    diag("chromium " . ($d->{version} // '?') . " through playwright-core");
}

plan tests => 27;

# ------------------------------------------------------------ the demo, rendered
my %mc = map { $_ => MsmTest::memcached(port => $MC_PORT{$_}) } sort keys %MC_PORT;

my $RUN = catdir(MsmTest::tmp_dir(), 'demo');
remove_tree($RUN);
make_path($RUN);
# as scripts/demo.sh: htdocs copied, mod_msm.so copied, htpasswd demo/demo, a secret
find({ no_chdir => 1, wanted => sub {
    my $rel = substr($File::Find::name, length catdir($TOP, 'demo', 'htdocs'));
    my $dst = catdir($RUN, 'htdocs') . $rel;
    if (-d $_) { make_path($dst) } else { copy($_, $dst) or die "copy $_: $!"; chmod((stat $_)[2] & 07777, $dst) }
} }, catdir($TOP, 'demo', 'htdocs'));
copy(catfile($TOP, '.libs', 'mod_msm.so'), catfile($RUN, 'mod_msm.so')) or die "copy mod_msm.so: $!";
{
    open my $fh, '>', catfile($RUN, 'htpasswd') or die $!;
    print $fh 'demo:{SHA}' . sha1_base64('demo') . "=\n";
    close $fh;
}
my $secret = encode_base64(join('', map { chr int rand 256 } 1 .. 24), '');
my $user = getpwuid($<) // 'nobody';
my $group = getgrgid((split " ", $()[0]) // "nogroup";

# mirrors render() of scripts/demo.sh (sed substitutions), plus the memcached ports
# (demo/backend.conf.in names 127.0.0.1:21211-21213 literally)
sub render {
    my ($tmpl, $route, $port) = @_;
    open my $fh, '<', catfile($TOP, 'demo', $tmpl) or die "$tmpl: $!";
    local $/;
    my $s = <$fh>;
    close $fh;
    my %v = (RUN => $RUN, MODULES => '/usr/lib/apache2/modules',
             MSM_SO => catfile($RUN, 'mod_msm.so'), HTDOCS => catdir($RUN, 'htdocs'),
             USER => $user, GROUP => $group, SECRET => $secret, ROUTE => $route,
             PORT => $port, PORT_A => $PORT_A, PORT_B => $PORT_B);
    for my $k (qw(RUN MODULES MSM_SO HTDOCS USER GROUP SECRET ROUTE PORT PORT_A PORT_B)) {
        $s =~ s/\@$k\@/$v{$k}/g;
    }
    $s =~ s/127\.0\.0\.1:(2121[123])\b/127.0.0.1:$DEMO_MC{$1}/g;
    return $s;
}
my %conf = (a => render('backend.conf.in', 'a', $PORT_A),
            b => render('backend.conf.in', 'b', $PORT_B),
            front => render('front.conf.in', 'front', $PORT_FRONT));
my @left = map { /(\@[A-Z_]+\@)/g } values %conf;
is_deeply(\@left, [], 'demo configs rendered: no placeholder left');
my $nodes_ok = 1;
$nodes_ok &&= $conf{$_} =~ /MsmNodes m1:127\.0\.0\.1:21390 m2:127\.0\.0\.1:21391 m3:127\.0\.0\.1:21392/
    for qw(a b);
ok($nodes_ok, 'back ends use this test\'s memcached ports');
my $syntax = 1;
for my $n (sort keys %conf) {
    my $f = catfile($RUN, ($n eq 'front' ? 'front' : "backend-$n") . '.conf');
    open my $fh, '>', $f or die "$f: $!";
    print $fh $conf{$n};
    close $fh;
    my $t = `@{[MsmTest::httpd_bin()]} -t -f $f 2>&1`;
    $syntax = 0, diag("apache2 -t $f: $t") unless $? == 0 && $t =~ /Syntax OK/;
}
ok($syntax, 'apache2 -t: the three rendered configs are valid');

# started like demo.sh starts them, but in the foreground, by pid (the PidFile line
# added last only moves the pid file where MsmTest's leftover reaper looks)
my %h;
for my $n (qw(a b front)) {
    my $port = $n eq 'a' ? $PORT_A : $n eq 'b' ? $PORT_B : $PORT_FRONT;
    $h{$n} = MsmTest::httpd(port => $port, name => "demo-$n", preamble => 0,
                            conf => $conf{$n} . "\nPidFile \@DIR\@/logs/httpd.pid\n");
}
my %elog = (a => catfile($RUN, 'backend-a.error.log'), b => catfile($RUN, 'backend-b.error.log'),
            front => catfile($RUN, 'front.error.log'));
my $front = MsmTest::client(base => "http://127.0.0.1:$PORT_FRONT");
ok(MsmTest::wait_until(sub { $front->get('/login.html')->status == 200 }, timeout => 10),
   'the front serves the login page');

# ------------------------------------------------------------ the browser
my ($pid, $out, $in) = start_node('--url', "http://127.0.0.1:$PORT_FRONT", '--shots', $shots);
my ($tag, $s0) = read_tagged($out, 90, 'LOGGEDIN');
is($tag, 'LOGGEDIN', 'logged in through the login form') or diag(explain $s0);
$s0 = {} unless ref $s0 eq 'HASH';
is($s0->{user}, 'demo', 'the page shows user demo');
my $s1;
($tag, $s1) = read_tagged($out, 60, 'STATE');
$s1 = {} unless ref $s1 eq 'HASH';
is($s1->{counter}, '3', 'three clicks on +1: counter 3') or diag(explain $s1);
like($s1->{route} // '', qr/^[ab]$/, "served by back end $s1->{route}") ;
like($s1->{node} // '', qr/^m[123]$/, "session on memcached node $s1->{node}");
my $route = $s1->{route} // 'a';
my $node = $s1->{node} // 'm1';
my $cookie = $s1->{cookie} // '';
like($cookie, qr/^[0-9a-f]{32}-\Q$node\E\.\Q$route\E$/, "cookie <hex>-$node.$route");
my ($hex) = $cookie =~ /^([0-9a-f]{32})/;
$hex //= 'none';

# memcached holds the session (primary, written after the response in sticky mode,
# and its backup on the next node: the same key demo:<hex>, both copies naming
# $node as primary); wait until the writes have settled
my @order = qw(m1 m2 m3);
my ($i) = grep { $order[$_] eq $node } 0 .. 2;
my $next = $order[(($i // 0) + 1) % 3];
my $key = MsmTest::session_key($hex, 'demo:');
sub names { my ($n, $want) = @_; my $c = MsmTest::parse_copy($mc{$n}->get($key)); return $c && ($c->{primary} // '') eq $want ? $c : undef }
ok(MsmTest::wait_until(sub { names($node, $node) && names($next, $node) }, timeout => 5),
   "primary on $node and backup on $next");
my $v = (names($next, $node) || {})->{payload} // '';
unlike($v, qr/demo-user|counter=|demo-pw/, 'memcached holds ciphertext only');
MsmTest::wait_until(sub {
    my $a = $mc{$next}->get($key) // '';
    sleep 0.4;
    return $a eq ($mc{$next}->get($key) // '');
}, timeout => 5, interval => 0.01);

# kill the back end that served the page and the memcached node holding the session
my $other = $route eq 'a' ? 'b' : 'a';
my @kids = $h{$route}->children;
$h{$route}->kill9;
$mc{$node}->kill9;
ok(!MsmTest::port_open($route eq 'a' ? $PORT_A : $PORT_B) && !MsmTest::port_open($MC_PORT{$node})
   && !grep({ kill 0, $_ } @kids),
   "back end $route (parent and " . scalar(@kids) . " children) and memcached $node killed");

print {$in} "reload\n";
$in->flush;
my $s2;
($tag, $s2) = read_tagged($out, 60, 'STATE');
$s2 = {} unless ref $s2 eq 'HASH';
is($tag, 'STATE', 'the browser reloaded the page') or diag(explain $s2);
is($s2->{user}, 'demo', 'after the failover: still logged in as demo');
is($s2->{counter}, '3', 'after the failover: counter 3');
is($s2->{route}, $other, "after the failover: served by back end $other");
like($s2->{cookie} // '', qr/^\Q$hex\E-m[123]\.\Q$other\E$/,
     "the cookie moved to route $other, same id ($s2->{cookie})");
isnt(($s2->{cookie} // '') =~ /-(m\d)\./ ? $1 : '', $node, 'and to a live memcached node');

my $s3;
($tag, $s3) = read_tagged($out, 60, 'STATE');
$s3 = {} unless ref $s3 eq 'HASH';
is($s3->{counter}, '4', '+1 after the failover: counter 4') or diag(explain $s3);
is($s3->{route}, $other, "still back end $other");
like($s3->{node} // '', qr/^m[123]$/, "session now on memcached node $s3->{node}");
isnt($s3->{node}, $node, 'not on the killed node');
close $in;
my $st = end_node($pid, 20);
is($st, 0, 'login.js finished cleanly');

my @png = sort glob(catfile($shots, '0*.png'));
my $pngs_ok = @png == 4;
for (@png) {
    open my $fh, '<:raw', $_ or ($pngs_ok = 0, next);
    read $fh, my $sig, 8;
    $pngs_ok = 0 unless $sig eq "\x89PNG\r\n\x1a\n" && -s $_ > 1000;
}
ok($pngs_ok, 'screenshots saved: ' . join(' ', map { s{.*/}{}r } @png));

my $blog = do { local $/; open my $fh, '<', $elog{$other}; <$fh> // '' };
like($blog, qr/MSM00101: memcached node \Q$node\E /, "back end $other logged node $node down");
my $all = '';
for my $f (values %elog, map { catfile($_->dir, 'logs', 'stderr.log') } values %h) {
    open my $fh, '<', $f or next;
    local $/;
    $all .= <$fh> // '';
}
unlike($all, qr/exit signal|Segmentation|AddressSanitizer|runtime error:/, 'no crash in the demo httpds');
diag("route $route -> $other, node $node -> " . ($s3->{node} // '?') . "; screenshots in $shots");

$h{$_}->stop for grep { $h{$_}->running } keys %h;
