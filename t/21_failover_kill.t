# Failover on a killed memcached (issue 4): 3 nodes, >= 30 sessions with
# distinct content; kill -9 each node in turn (the previous one restarted empty).
# Every session whose primary died is read from its backup (the same key t:<hex>
# on the next node, naming the dead node as primary) with the same content and
# moves to a live node (cookie <same hex>-<live node>; the copy there becomes the
# primary); the other sessions keep their cookie; after the killed node is back
# (empty) every session is still readable and later writes go to live nodes. Log
# lines name sessions by their tag, never by their id.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Time::HiRes qw(time sleep);

plan tests => 4 + 3 * 13, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my @ORDER = qw(n1 n2 n3);
my %PORT  = (n1 => 21301, n2 => 21302, n3 => 21303);
my %NEXT  = (n1 => 'n2', n2 => 'n3', n3 => 'n1');
my $ID    = qr/^([0-9a-f]{32})-(n[123])$/;
my $OP_TIMEOUT = 0.5;    # MsmOperationTimeout 500 (t/conf/extra.conf.in)

my %mc = map { $_ => MsmTest::memcached(port => $PORT{$_}) } @ORDER;
ok(MsmTest::wait_nodes_live(\@ORDER), 'mod_msm sees n1-n3 live');

sub count_by_node { my %n; $n{ $_->{node} }++ for @_; return join ' ', map { "$_=" . ($n{$_} // 0) } @ORDER }

# ------------------------------------------------ >= 30 sessions, every node holding some
my @S;
for my $i (1 .. 90) {
    my $c = MsmTest::client();
    my $val = "s$i-" . MsmTest::random_hex();
    my $r = $c->get("/msm/app.cgi?op=set&k=data&v=$val");
    my ($hex, $node) = ($r->cookie('MSMSESSION') // '') =~ $ID;
    push @S, { c => $c, hex => $hex, node => $node, val => $val } if $r->status == 200 && $node;
    my %n;
    $n{ $_->{node} }++ for @S;
    last if @S >= 36 && !grep { ($n{$_} // 0) < 4 } @ORDER;
}
my %cnt;
$cnt{ $_->{node} }++ for @S;
ok(@S >= 30 && !grep({ ($cnt{$_} // 0) < 4 } @ORDER),
   scalar(@S) . ' sessions with distinct content, >= 4 per node (' . count_by_node(@S) . ')');

sub sid { "$_[0]{hex}-$_[0]{node}" }
# the copy a node holds of a session (MsmTest::parse_copy), {} when none
sub copy_on { my ($node, $hex) = @_; return ($mc{$node}->running && $mc{$node}->copy($hex)) || {} }

# the backups are written after the responses: wait until every one is in place
sub backups_in_place {
    my @missing;
    MsmTest::wait_until(sub {
        @missing = grep { (copy_on($NEXT{ $_->{node} }, $_->{hex})->{primary} // '') ne $_->{node} } @S;
        return !@missing;
    }, timeout => 10, interval => 0.1);
    return @missing;
}
my @missing = backups_in_place();
is(scalar @missing, 0, 'every session has its backup on the next node')
    or diag('missing: ' . join ' ', map { sid($_) } @missing);

my $total_lost = 0;
for my $victim (@ORDER) {
    my @on_victim = grep { $_->{node} eq $victim } @S;
    my %was = map { ("$_" => sid($_)) } @S;
    my $mark = MsmTest::log_mark();
    $mc{$victim}->kill9;

    # every session read once, right after the kill
    my ($lost, $bad_cookie, $moved, $worst, @problems) = (0, 0, 0, 0);
    for my $s (@S) {
        my $r = $s->{c}->get('/msm/app.cgi?op=read');
        $worst = $r->elapsed if $r->elapsed > $worst;
        my $data = ref $r->session eq 'HASH' ? $r->session->{data} : undef;
        if ($r->status != 200 || !defined $data || $data ne $s->{val}) {
            $lost++;
            push @problems, "$was{$s}: status " . $r->status . ', data ' . ($data // 'none');
        }
        my $nc = $r->cookie('MSMSESSION');
        if ($s->{node} eq $victim) {
            my ($hex, $node) = ($nc // '') =~ $ID;
            if ($hex && $hex eq $s->{hex} && $node ne $victim) {
                $s->{node} = $node;
                $moved++;
            }
            else {
                $bad_cookie++;
                push @problems, "$was{$s}: new cookie " . ($nc // 'none');
            }
        }
        elsif (defined $nc) {
            $bad_cookie++;
            push @problems, "$was{$s}: cookie changed to $nc";
        }
    }
    $total_lost += $lost;
    diag(sprintf "kill -9 %s: %d sessions, %d on %s, lost %d/%d, worst latency %.1f ms",
         $victim, scalar @S, scalar @on_victim, $victim, $lost, scalar @S, $worst * 1000);
    is($lost, 0, "kill -9 $victim: sessions lost 0/" . scalar(@S) . ' (same content read)')
        or diag(join "\n", @problems);
    is($bad_cookie, 0, "kill -9 $victim: the " . scalar(@on_victim) . " sessions of $victim got "
       . '<same hex>-<live node>, the others kept their cookie') or diag(join "\n", @problems);
    cmp_ok($worst, '<', $OP_TIMEOUT + 0.3,
           sprintf 'kill -9 %s: worst request latency %.0f ms < MsmOperationTimeout + 300 ms',
           $victim, $worst * 1000);
    my @not_there = grep { (copy_on($_->{node}, $_->{hex})->{primary} // '') ne $_->{node} } @on_victim;
    ok(@on_victim && !@not_there,
       "kill -9 $victim: each moved session is the primary on its new node ("
       . count_by_node(@on_victim) . ')')
        or diag('not there: ' . join ' ', map { sid($_) } @not_there);
    # the moved session's old backup does not stay behind as a copy of the dead
    # primary: on $NEXT{$victim} it was rewritten (it became the new primary, or a
    # backup naming it), so no live node holds a copy naming $victim any more
    my @old_bak;
    MsmTest::wait_until(sub {
        @old_bak = grep { my $s = $_; grep { (copy_on($_, $s->{hex})->{primary} // '') eq $victim }
                                       grep { $_ ne $victim } @ORDER } @on_victim;
        return !@old_bak;
    }, timeout => 5);
    is(scalar @old_bak, 0, "kill -9 $victim: no copy naming $victim as primary left on $NEXT{$victim} "
       . '(the old backups were rewritten)') or diag(join ' ', map { $_->{hex} } @old_bak);
    my $log = MsmTest::log_since($mark);
    my $down = () = $log =~ /MSM00101: memcached node $victim /g;
    my %tag = map { MsmTest::session_tag($_->{hex}) => 1 } @on_victim;
    my $reloc = grep { $tag{$_} } $log =~ /MSM00110: session ([0-9a-f]{8}) moved to node (?!$victim\b)n[123]\b/g;
    is($down, 1, "kill -9 $victim: MSM00101 logged once");
    is($reloc, scalar @on_victim, "kill -9 $victim: MSM00110 logged for each moved session, by its tag ($reloc)");
    my @ids = MsmTest::ids_in($log);
    is_deeply(\@ids, [], "kill -9 $victim: no session id (32 hex digits) in the error_log")
        or diag(join "\n", grep { my $l = $_; grep { index($l, $_) >= 0 } @ids } split /\n/, $log);

    # second read: nothing moves any more
    my ($lost2, $changed2) = (0, 0);
    for my $s (@S) {
        my $r = $s->{c}->get('/msm/app.cgi?op=read');
        $lost2++ unless $r->status == 200 && (($r->session // {})->{data} // '') eq $s->{val};
        $changed2++ if defined $r->cookie('MSMSESSION');
    }
    ok($lost2 == 0 && $changed2 == 0,
       "kill -9 $victim: second read of all: lost $lost2, cookies changed $changed2");

    # the killed node comes back empty
    $mc{$victim}->restart;
    ok(MsmTest::wait_nodes_live(\@ORDER), "$victim restarted (empty) and live again");
    my ($lost3, $changed3) = (0, 0);
    for my $s (@S) {
        my $r = $s->{c}->get('/msm/app.cgi?op=read');
        $lost3++ unless $r->status == 200 && (($r->session // {})->{data} // '') eq $s->{val};
        $changed3++ if defined $r->cookie('MSMSESSION');
    }
    $total_lost += $lost3;
    ok($lost3 == 0 && $changed3 == 0,
       "$victim back: all " . scalar(@S) . " sessions readable (lost $lost3, cookies changed $changed3)");

    # later writes go to live nodes: the cookie's node holds the new value
    my ($bad_write, @bw) = (0);
    for my $s (@S) {
        my $val = "w$victim-" . MsmTest::random_hex();
        my $r = $s->{c}->get("/msm/app.cgi?op=set&k=data&v=$val");
        if (defined(my $nc = $r->cookie('MSMSESSION'))) {
            my ($hex, $node) = $nc =~ $ID;
            $s->{node} = $node if $hex && $hex eq $s->{hex};
        }
        my $cp = copy_on($s->{node}, $s->{hex});
        my $stored = ($cp->{primary} // '') eq $s->{node} ? $cp->{payload} // '' : '';
        if ($r->status != 200 || $stored !~ /data=\Q$val\E/) {
            $bad_write++;
            push @bw, sid($s) . ': status ' . $r->status . ", stored '$stored'";
        }
        $s->{val} = $val;
    }
    is($bad_write, 0, "$victim back: a write of each session lands on its cookie's node ("
       . count_by_node(@S) . ')') or diag(join "\n", @bw);
    my @nb = backups_in_place();
    is(scalar @nb, 0, "$victim back: every session's backup is on the next node again")
        or diag('missing: ' . join ' ', map { sid($_) } @nb);
}
is($total_lost, 0, 'sessions lost over the three kills: 0');
diag("sessions lost / total: $total_lost/" . scalar(@S));
