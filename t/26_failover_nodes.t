# MsmFailoverNodes (issue 4), on an extra httpd of its own (port 21330) with
# MsmNodes f1 f2 f3 (memcached 21331-21333) and "MsmFailoverNodes f3": new
# sessions go to f1/f2 only while one of them is alive (f3 still holds
# backups: f2's go to f3); with f1 and f2 stopped new sessions go to f3; once
# f1/f2 are back new sessions avoid f3 again. (Configuration errors of the
# directive are tested elsewhere.) Every copy is the key t:<hex>: a primary's header
# names its own node, a backup's the primary's node.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Time::HiRes qw(time sleep);

plan tests => 17, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my %PORT = (f1 => 21331, f2 => 21332, f3 => 21333);
my @F    = qw(f1 f2 f3);
my %NEXT = (f1 => 'f2', f2 => 'f3', f3 => 'f1');
my $ID   = qr/^([0-9a-f]{32})-(f[123])$/;

my %mc = map { $_ => MsmTest::memcached(port => $PORT{$_}) } @F;
my $h = MsmTest::httpd(port => 21330, name => 'failover', servers => 3, conf => <<'EOF');
MsmNodes f1:127.0.0.1:21331 f2:127.0.0.1:21332 f3:127.0.0.1:21333
MsmFailoverNodes f3
MsmOperationTimeout 500
MsmNodeRetry 1
MsmKeyPrefix t:
<Location /msm/>
    @APP_SESSION@
</Location>
<Location /msm-status>
    SetHandler msm-status
    Require local
</Location>
EOF
my $url = $h->url;
ok(MsmTest::wait_nodes_live(\@F, base => $url), 'extra httpd with MsmFailoverNodes f3 up, f1-f3 live');

# the node a node's copy of a session names as its primary ('' when it holds none)
sub primary_on { my ($node, $sid) = @_; return $mc{$node}->running ? (($mc{$node}->copy($sid) || {})->{primary} // '') : '' }
sub dist { my %n; $n{ $_->{node} }++ for @_; return join ' ', map { "$_=" . ($n{$_} // 0) } @F }

sub create {
    my ($n, $tag) = @_;
    my (@s, $failed);
    for my $i (1 .. $n) {
        my $c = MsmTest::client(base => $url);
        my $val = "$tag$i-" . MsmTest::random_hex();
        my $r = $c->get("/msm/app.cgi?op=set&k=data&v=$val");
        my ($hex, $node) = ($r->cookie('MSMSESSION') // '') =~ $ID;
        if ($r->status == 200 && $node) { push @s, { c => $c, sid => "$hex-$node", node => $node, val => $val } }
        else { $failed++ }
    }
    return (\@s, $failed // 0);
}

# ------------------------------------------------ all up: f1/f2 only
my ($S, $failed) = create(45, 'up');
my @S = @$S;
my @on3 = grep { $_->{node} eq 'f3' } @S;
ok(@S >= 40 && !$failed, scalar(@S) . ' sessions created (' . dist(@S) . ')');
is(scalar @on3, 0, 'no new session on the failover node f3');
ok((grep { $_->{node} eq 'f1' } @S) && (grep { $_->{node} eq 'f2' } @S), 'both f1 and f2 receive new sessions');
my @primaries_f3 = grep { primary_on('f3', $_->{sid}) eq 'f3' } @S;
# every session key f3 holds (metadump) is a backup: its copy names another node
my @keys3 = grep { my $c = MsmTest::parse_copy($mc{f3}->get($_)); !$c || ($c->{primary} // '') eq 'f3' }
            grep { /^t:/ } $mc{f3}->keys;
ok(!@primaries_f3 && !@keys3, 'f3 holds no session primary (exact look-ups and metadump)')
    or diag("primary keys on f3: @keys3 " . join(' ', map { $_->{sid} } @primaries_f3));
# the failover node still holds backups: those of f2's sessions
my @f2 = grep { $_->{node} eq 'f2' } @S;
ok(@f2 && MsmTest::wait_until(sub { !grep { primary_on('f3', $_->{sid}) ne 'f2' } @f2 }, timeout => 5),
   'f3 holds the backups of f2\'s ' . scalar(@f2) . ' sessions');

# ------------------------------------------------ f1 and f2 stopped: f3 takes new sessions
my $mark = MsmTest::log_mark($h->error_log);
$mc{$_}->stop for qw(f1 f2);
ok(!MsmTest::port_open($PORT{f1}) && !MsmTest::port_open($PORT{f2}), 'f1 and f2 stopped');
my ($D, $dfailed) = create(12, 'down');
my @D = @$D;
ok(@D == 12 && !grep({ $_->{node} ne 'f3' } @D), 'f1, f2 down: new sessions go to f3 (' . dist(@D) . ", $dfailed failed)");
my @missing = grep { primary_on('f3', $_->{sid}) ne 'f3' } @D;
is(scalar @missing, 0, 'they are stored on f3');
my @rd = grep { my $r = $_->{c}->get('/msm/app.cgi?op=read'); (($r->session // {})->{data} // '') ne $_->{val} } @D;
is(scalar @rd, 0, 'and read back');
# f2's sessions have their backup on f3: they move there with their content
my ($moved, @mp) = (0);
for my $s (@f2) {
    my $r = $s->{c}->get('/msm/app.cgi?op=read');
    my $nc = $r->cookie('MSMSESSION') // '';
    if ((($r->session // {})->{data} // '') eq $s->{val} && $nc eq substr($s->{sid}, 0, 32) . '-f3') { $moved++ }
    else { push @mp, "$s->{sid}: " . $r->status . " cookie '$nc' raw " . ($r->field('raw') // '') }
}
is($moved, scalar @f2, "f2's sessions were read from their backup on f3 and moved there ($moved/" . scalar(@f2) . ')')
    or diag(join "\n", @mp);
my $log = MsmTest::log_since($mark);
like($log, qr/MSM00101: memcached node f1 /, 'MSM00101 for f1');
like($log, qr/MSM00101: memcached node f2 /, 'MSM00101 for f2');
my @ids = MsmTest::ids_in($log);
is_deeply(\@ids, [], 'no session id (32 hex digits) in the error_log (relocations are logged by tag)')
    or diag(join "\n", grep { my $l = $_; grep { index($l, $_) >= 0 } @ids } split /\n/, $log);

# ------------------------------------------------ f1, f2 back: new sessions avoid f3 again
$mc{$_}->restart for qw(f1 f2);
ok(MsmTest::wait_nodes_live(\@F, base => $url), 'f1 and f2 restarted and live again');
my ($B) = create(20, 'back');
my @B = @$B;
ok(@B == 20 && !grep({ $_->{node} eq 'f3' } @B), 'f1, f2 back: new sessions on f1/f2 only again (' . dist(@B) . ')');

$h->stop;
ok(!MsmTest::port_open(21330), 'extra httpd stopped');
