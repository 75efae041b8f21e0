# memcached's text-protocol authentication (README, MsmAuth / MsmAuthFile):
# two memcached with -Y (21327, 21328), httpds on 21326 and 21329.
#   - MsmAuthFile with the right password: sessions are written and read on
#     both nodes; the password shows up in no log and no status page;
#   - MsmAuth with a wrong password, and no MsmAuth at all: httpd starts,
#     requests answer 200 (no session) within the operation timeout, each node
#     is marked down once with "authentication failed", the password is
#     never logged;
#   - a node without -Y in the list: it never holds the credentials as an
#     item anyone could read back.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use File::Spec::Functions qw(catfile);
use Time::HiRes qw(time);

plan tests => 12, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my ($USER, $PASS) = ('msm', 'S3cret-pw-' . MsmTest::random_hex());
my %mc = (a1 => MsmTest::memcached(port => 21327, auth => [$USER, $PASS]),
          a2 => MsmTest::memcached(port => 21328, auth => [$USER, $PASS]));
my $authfile = catfile(MsmTest::tmp_dir(), "19-auth-$$");
{
    open my $fh, '>', $authfile or die "$authfile: $!";
    print $fh "# memcached credentials\n$USER:$PASS\n";
    close $fh;
    chmod 0600, $authfile;
}

sub app {
    my ($port, $name, $auth) = @_;
    return MsmTest::httpd(port => $port, name => "19-$name", conf => <<"EOF");
MsmNodes a1:127.0.0.1:21327 a2:127.0.0.1:21328
MsmKeyPrefix t:
MsmOperationTimeout 500
MsmNodeRetry 1
$auth
<Location /msm/>
    \@APP_SESSION\@
</Location>
<Location /msm-status>
    SetHandler msm-status
</Location>
EOF
}
sub hex_of { MsmTest::cookie_hex(@_) // '' }

# ---- the right credentials, from a file
my $h = app(21326, 'right', "MsmAuthFile $authfile");
ok(MsmTest::wait_nodes_live([qw(a1 a2)], base => $h->url), 'MsmAuthFile: httpd up, a1 and a2 (-Y) live');
my $c = MsmTest::client(base => $h->url);
$c->get('/msm/app.cgi?op=set&k=data&v=authenticated');
my $sid = $c->cookie('MSMSESSION') // '';
my $r = $c->get('/msm/app.cgi?op=read');
ok((($r->session // {})->{data} // '') eq 'authenticated', 'a session written and read back');
ok(MsmTest::wait_until(sub { $mc{a1}->holds(hex_of($sid)) && $mc{a2}->holds(hex_of($sid)) }, timeout => 5),
   'its primary and its backup are on the two -Y nodes');
my $status = MsmTest::client(base => $h->url)->get('/msm-status?format=prometheus')->body // '';
$status .= MsmTest::client(base => $h->url)->get('/msm-status')->body // '';
ok(index($status, $PASS) < 0 && index($status, $USER . ':') < 0, 'the password is in no status page');
$h->stop;

# ---- a wrong password; then no credentials at all
for my $case (['wrong', "MsmAuth $USER wrong-$PASS", "wrong-$PASS"], ['none', '', undef]) {
    my ($name, $auth, $secret) = @$case;
    my $hw = app(21329, $name, $auth);
    my $t0 = time;
    my $rw = MsmTest::client(base => $hw->url)->get('/msm/app.cgi?op=set&k=data&v=x');
    my $took = time - $t0;
    ok($rw->status == 200 && $took < 3,
       "$name: httpd -t passed and httpd started; a request answers 200 in "
       . sprintf('%.2f s', $took) . ' (nodes refused, no 500)');
    my $log = MsmTest::log_since([$hw->error_log, 0]);
    ok($log =~ /MSM00101: memcached node a1 \(127\.0\.0\.1:21327\) is down: memcached authentication failed/
       && $log =~ /MSM00101: memcached node a2 \(127\.0\.0\.1:21328\) is down: memcached authentication failed/,
       "$name: each node marked down once, the log says authentication failed")
        or diag(join "\n", grep { /MSM001/ } split /\n/, $log);
    ok(index($log, $PASS) < 0, "$name: no password in the error_log");
    $hw->stop;
}

# ---- a node without -Y in the list: the credentials do not stay there
$mc{a2}->stop;
$mc{a2} = MsmTest::memcached(port => 21328);
$h = app(21326, 'mixed', "MsmAuth $USER $PASS");
ok(MsmTest::wait_nodes_live([qw(a1 a2)], base => $h->url), 'a1 with -Y and a2 without: both live');
$c = MsmTest::client(base => $h->url);
$c->get('/msm/app.cgi?op=set&k=data&v=mixed');
$sid = $c->cookie('MSMSESSION') // '';
my $held = MsmTest::wait_until(sub { $mc{a2}->holds(hex_of($sid)) }, timeout => 5);
my @items = eval { $mc{a2}->keys };
ok($held && !grep({ /msm-auth/ } @items) && !defined $mc{a2}->get('msm-auth'),
   'the node without -Y holds a copy of the session, and no item with the credentials ('
   . scalar(@items) . ' items)') or diag("items: @items");
$h->stop;
$_->stop for values %mc;
unlink $authfile;
