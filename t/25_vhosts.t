# Per-vhost node lists under failover (issue 4): the main server uses n1-n3, the
# vhost msm_vhost2 uses v1 (21311) and v2 (21312). Sessions of each land only on
# their own vhost's nodes (every key checked on every node); killing v1 leaves
# the main server's sessions where they are (no relocation, no MSM00101 for
# n1-n3), and moves vhost2's sessions from v1 to v2. Every copy of a session is the
# key t:<hex>: the primary's header names its own node, a backup's names the primary.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Time::HiRes qw(time sleep);

plan tests => 19, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my %PORT = (n1 => 21301, n2 => 21302, n3 => 21303, v1 => 21311, v2 => 21312);
my @MAIN = qw(n1 n2 n3);
my @V    = qw(v1 v2);
my @ALL  = (@MAIN, @V);
my %NEXT = (n1 => 'n2', n2 => 'n3', n3 => 'n1', v1 => 'v2', v2 => 'v1');

my %mc = map { $_ => MsmTest::memcached(port => $PORT{$_}) } @ALL;
my $vurl = MsmTest::url('msm_vhost2');
ok(MsmTest::wait_nodes_live(\@MAIN) && MsmTest::wait_nodes_live(\@V, base => $vurl),
   'mod_msm sees n1-n3 (main server) and v1-v2 (msm_vhost2) live');

sub has_key { my ($node, $key) = @_; return $mc{$node}->running && defined $mc{$node}->ttl($key) }

# the node a node's copy of a session names as its primary (undef when it holds none)
sub primary_on { my ($node, $sid) = @_; return $mc{$node}->running ? ($mc{$node}->copy($sid) || {})->{primary} : undef }

# where the copies of a session are: (primary nodes: the copy names its own node,
# backup nodes: the copy names the session's node $sid names), each node asked
sub locate {
    my $sid = shift;
    my ($node) = $sid =~ /-(\w+)$/;
    my %at = map { $_ => primary_on($_, $sid) } @ALL;
    my @p = grep { defined $at{$_} && $at{$_} eq $_ } @ALL;
    my @b = grep { defined $at{$_} && $at{$_} ne $_ && $at{$_} eq $node } @ALL;
    my @o = grep { defined $at{$_} && $at{$_} ne $_ && $at{$_} ne $node } @ALL;
    return (join(',', @p), join(',', @b, map { "$_(names $at{$_})" } @o));
}

sub create {
    my ($vhost, $n, $ids, $need) = @_;
    my @s;
    my %cnt;
    for my $i (1 .. $n * 3) {
        my $c = MsmTest::client($vhost ? (vhost => $vhost) : ());
        my $val = ($vhost ? 'vh' : 'main') . "$i-" . MsmTest::random_hex();
        my $r = $c->get("/msm/app.cgi?op=set&k=data&v=$val");
        my $sid = $r->cookie('MSMSESSION') // '';
        my ($hex, $node) = $sid =~ /^([0-9a-f]{32})-(\w+)$/;
        next unless $r->status == 200 && $node;
        push @s, { c => $c, sid => $sid, hex => $hex, node => $node, val => $val };
        $cnt{$node}++;
        last if @s >= $n && !grep { ($cnt{$_} // 0) < $need } @$ids;
    }
    return @s;
}

my @M  = create(undef, 15, \@MAIN, 2);
my @VS = create('msm_vhost2', 12, \@V, 3);
my %mcnt; $mcnt{ $_->{node} }++ for @M;
my %vcnt; $vcnt{ $_->{node} }++ for @VS;
my $dist = sub { my $h = shift; join ' ', map { "$_=" . ($h->{$_} // 0) } sort keys %$h };
ok(@M >= 15 && !grep({ !/^n[123]$/ } keys %mcnt), scalar(@M) . ' main-server sessions, ids name n1-n3 only ('
   . $dist->(\%mcnt) . ')');
ok(@VS >= 12 && !grep({ !/^v[12]$/ } keys %vcnt) && ($vcnt{v1} // 0) >= 3,
   scalar(@VS) . ' vhost2 sessions, ids name v1-v2 only, >= 3 on v1 (' . $dist->(\%vcnt) . ')');

# every key of every session, looked up on all five nodes (backups are written after the response)
sub placement_errors {
    my @bad;
    for my $s (@_) {
        my ($p, $b) = locate($s->{sid});
        push @bad, "$s->{sid}: primary on [$p], backup on [$b]"
            unless $p eq $s->{node} && $b eq $NEXT{ $s->{node} };
    }
    return @bad;
}
my @bad;
MsmTest::wait_until(sub { @bad = placement_errors(@M, @VS); !@bad }, timeout => 5, interval => 0.2);
is(scalar @bad, 0, 'each session: primary on its cookie\'s node, backup on the next node of the same vhost, '
   . 'nothing on the other vhost\'s nodes') or diag(join "\n", @bad);
# and a sweep of everything each node holds (lru_crawler metadump): no key of the other vhost
my %hex_main = map { $_->{hex} => 1 } @M;
my %hex_v    = map { $_->{hex} => 1 } @VS;
my @stray;
for my $n (@ALL) {
    for my $k ($mc{$n}->keys) {
        my ($h) = $k =~ /([0-9a-f]{32})/ or next;
        push @stray, "$k on $n" if ($n =~ /^v/ && $hex_main{$h}) || ($n =~ /^n/ && $hex_v{$h});
    }
}
is(scalar @stray, 0, 'metadump of all five nodes: no key of one vhost on the other\'s nodes')
    or diag(join "\n", @stray);

# ------------------------------------------------ kill v1
my $mark = MsmTest::log_mark();
$mc{v1}->kill9;
ok(!MsmTest::port_open($PORT{v1}), 'v1 killed');

# main server: untouched
my ($mlost, $mchanged, @mp) = (0, 0);
for my $s (@M) {
    my $r = $s->{c}->get('/msm/app.cgi?op=read');
    if ($r->status != 200 || (($r->session // {})->{data} // '') ne $s->{val}) {
        $mlost++;
        push @mp, "$s->{sid}: " . $r->status . ' ' . ($r->field('raw') // '');
    }
    if (defined $r->cookie('MSMSESSION')) { $mchanged++; push @mp, "$s->{sid}: cookie " . $r->cookie('MSMSESSION') }
}
is($mlost, 0, 'v1 killed: every main-server session reads with its content') or diag(join "\n", @mp);
is($mchanged, 0, 'v1 killed: no main-server session changed its cookie (no relocation)') or diag(join "\n", @mp);
@bad = placement_errors(@M);
is(scalar @bad, 0, 'v1 killed: main-server keys still on the same n1-n3 nodes') or diag(join "\n", @bad);

# vhost2: sessions of v1 move to v2
my ($vlost, $vbad, @vp) = (0, 0);
my @was_v1 = grep { $_->{node} eq 'v1' } @VS;
for my $s (@VS) {
    my $r = $s->{c}->get('/msm/app.cgi?op=read');
    if ($r->status != 200 || (($r->session // {})->{data} // '') ne $s->{val}) {
        $vlost++;
        push @vp, "$s->{sid}: " . $r->status . ' ' . ($r->field('raw') // '');
    }
    my $nc = $r->cookie('MSMSESSION');
    if ($s->{node} eq 'v1') {
        if (($nc // '') eq "$s->{hex}-v2") { $s->{node} = 'v2'; $s->{sid} = $nc }
        else { $vbad++; push @vp, "$s->{sid}: new cookie " . ($nc // 'none') }
    }
    elsif (defined $nc) { $vbad++; push @vp, "$s->{sid}: cookie changed to $nc" }
}
is($vlost, 0, 'v1 killed: every vhost2 session reads with its content') or diag(join "\n", @vp);
is($vbad, 0, 'v1 killed: the ' . scalar(@was_v1) . ' sessions of v1 now have <same hex>-v2, those of v2 kept '
   . 'their cookie') or diag(join "\n", @vp);
my @not_v2 = grep { (primary_on('v2', $_->{sid}) // '') ne 'v2' } @was_v1;
ok(@was_v1 && !@not_v2, 'v1 killed: the moved sessions are primaries on v2')
    or diag(join ' ', map { $_->{sid} } @not_v2);
my @on_main = grep { my $s = $_; grep { has_key($_, MsmTest::session_key($s->{sid})) } @MAIN } @VS;
is(scalar @on_main, 0, 'v1 killed: no vhost2 session went to n1-n3');

my $log = MsmTest::log_since($mark);
my @main_events = $log =~ /(MSM001(?:01|02|03|10)[^\n]*\bn[123]\b[^\n]*)/g;
is(scalar @main_events, 0, 'no MSM00101/102/103/110 about n1-n3') or diag(join "\n", @main_events);
my $v1_down = () = $log =~ /MSM00101: memcached node v1 /g;
is($v1_down, 1, 'MSM00101 for v1 logged once');
my %tag = map { MsmTest::session_tag($_->{hex}) => 1 } @was_v1;
my $moved = grep { $tag{$_} } $log =~ /MSM00110: session ([0-9a-f]{8}) moved to node v2\b/g;
is($moved, scalar @was_v1, "MSM00110 for each moved vhost2 session, by its tag ($moved)");
my @ids = MsmTest::ids_in($log);
is_deeply(\@ids, [], 'no session id (32 hex digits) in the error_log (relocations are logged by tag)')
    or diag(join "\n", grep { my $l = $_; grep { index($l, $_) >= 0 } @ids } split /\n/, $log);
my $st = MsmTest::node_states();
ok($st->{n1} && $st->{n2} && $st->{n3} && !$st->{v1} && $st->{v2},
   'msm-status: n1-n3 and v2 live, v1 dead');

# ------------------------------------------------ v1 back
$mc{v1}->restart;
ok(MsmTest::wait_nodes_live(\@V, base => $vurl), 'v1 restarted and live again');
