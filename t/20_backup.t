# Backup copies (issue 4): every write of session <hex>-nX (the copy "MSM1 S
# <version> <written> nX\n<value>" under t:<hex> on nX) also stores the same copy
# under the same key t:<hex> on the next node in MsmNodes order (n1->n2, n2->n3,
# n3->n1), naming nX as its primary, with an expiry not shorter than the
# primary's; destroying the session replaces both with a tombstone ("MSM1 D");
# with the backup node dead the backup goes to the next live node.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Time::HiRes qw(time sleep);

plan tests => 39, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my @ORDER = qw(n1 n2 n3);
my %PORT  = (n1 => 21301, n2 => 21302, n3 => 21303);
my %NEXT  = (n1 => 'n2', n2 => 'n3', n3 => 'n1');
my $ID    = qr/^([0-9a-f]{32})-(n[123])$/;

my %mc = map { $_ => MsmTest::memcached(port => $PORT{$_}) } @ORDER;
# node state lives in the httpd's shared memory across test files
ok(MsmTest::wait_nodes_live(\@ORDER), 'mod_msm sees n1-n3 live');

# exact look-up (meta get): lru_crawler metadump can miss an item that is being
# moved between LRUs right after it was read
sub has_key { my ($node, $key) = @_; return defined $mc{$node}->ttl($key) }

# where a key is, over the running nodes
sub where {
    my $key = shift;
    return join ',', grep { $mc{$_}->running && has_key($_, $key) } @ORDER;
}

# the copy of a session on a node (MsmTest::parse_copy), {} when there is none
sub copy_on { my ($node, $sid) = @_; return ($mc{$node}->running && $mc{$node}->copy($sid)) || {} }

sub new_session {
    my $tag = shift;
    my $c   = MsmTest::client();
    my $val = "$tag-" . MsmTest::random_hex();
    my $r   = $c->get("/msm/app.cgi?op=set&k=data&v=$val");
    my $sid = $r->cookie('MSMSESSION') // '';
    my ($hex, $node) = $sid =~ $ID;
    return unless $r->status == 200 && $node;
    return { c => $c, sid => $sid, node => $node, val => $val };
}

# ------------------------------------------------ each node primary at least once
my %by_node;
my $created = 0;
for my $i (1 .. 60) {
    my $s = new_session("s$i") or next;
    $created++;
    push @{ $by_node{ $s->{node} } }, $s;
    last if $created >= 6 && 3 == grep { $by_node{$_} } @ORDER;
}
is_deeply([grep { $by_node{$_} } @ORDER], \@ORDER,
          "each node was primary at least once ($created sessions: "
          . join(' ', map { "$_=" . scalar @{ $by_node{$_} || [] } } @ORDER) . ')');

for my $node (@ORDER) {
    my $s = ($by_node{$node} || [])->[0];
    my $next = $NEXT{$node};
    my ($other) = grep { $_ ne $node && $_ ne $next } @ORDER;
    SKIP: {
        skip "no session on $node", 5 unless $s;
        my $key = MsmTest::session_key($s->{sid});
        my $pv = $mc{$node}->get($key);
        my $pc = MsmTest::parse_copy($pv) || {};
        ok(($pc->{kind} // '') eq 'S' && ($pc->{primary} // '') eq $node
           && $pc->{payload} =~ /(^|&)data=\Q$s->{val}\E(&|$)/,
           "$node: primary $key holds the session (a copy naming $node as primary)");
        # backups are written after the response (MsmBackupAsync On)
        my $bv = MsmTest::wait_until(sub { $mc{$next}->get($key) }, timeout => 5);
        ok(defined $bv && ((MsmTest::parse_copy($bv) || {})->{primary} // '') eq $node,
           "$node: the backup (the same key $key, naming $node as primary) is on the next node $next")
            or diag("$key found on: " . where($key));
        is($bv, $pv, "$node: backup copy == primary copy (value, version, write time)");
        ok(!has_key($other, $key),
           "$node: only the primary on $node and the backup on $next (no copy on $other)");
        my ($pt, $bt) = ($mc{$node}->ttl($key), $mc{$next}->ttl($key));
        diag("$node: primary ttl " . ($pt // 'none') . " s, backup ttl " . ($bt // 'none') . ' s');
        ok(defined $pt && $pt > 0 && defined $bt && $bt >= $pt,
           "$node: backup expiry >= primary expiry (" . ($bt // 'none') . ' >= ' . ($pt // 'none') . ')');
    }
}

# ------------------------------------------------ an update rewrites both copies
my $s1 = $by_node{n1}[0];
SKIP: {
    skip 'no session on n1', 5 unless $s1;
    my $key = MsmTest::session_key($s1->{sid});
    my $val = 'upd-' . MsmTest::random_hex();
    my $r = $s1->{c}->get("/msm/app.cgi?op=set&k=data&v=$val");
    is($r->status, 200, 'update of the n1 session');
    ok(!defined $r->cookie('MSMSESSION'), 'update: cookie unchanged (no Set-Cookie)');
    like(copy_on('n1', $s1->{sid})->{payload} // '', qr/data=\Q$val\E/, 'update: primary on n1 holds the new value');
    ok(MsmTest::wait_until(sub { (copy_on('n2', $s1->{sid})->{payload} // '') =~ /data=\Q$val\E/ }, timeout => 5),
       'update: backup on n2 holds the new value');
    $s1->{val} = $val;
    # a read refreshes the primary's expiry (gats) only: the backup still outlives it
    $r = $s1->{c}->get('/msm/app.cgi?op=read');
    my ($pt, $bt) = ($mc{n1}->ttl($key), $mc{n2}->ttl($key));
    ok($r->status == 200 && defined $pt && defined $bt && $bt >= $pt,
       "after a read: backup ttl $bt >= primary ttl $pt");
}

# ------------------------------------------------ destroy replaces both copies (n3: wrap to n1)
# with a tombstone ("MSM1 D", no value), written on every node before the response
my $s3 = $by_node{n3}[0];
SKIP: {
    skip 'no session on n3', 5 unless $s3;
    my $sid = $s3->{sid};
    ok(MsmTest::wait_until(sub { (copy_on('n1', $sid)->{primary} // '') eq 'n3' }, timeout => 5),
       'n3 session: backup present on n1 before destroy');
    my $r = $s3->{c}->get('/msm/app.cgi?op=destroy');
    is($r->status, 200, 'destroy');
    is_deeply($r->session, {}, 'destroy: empty session');
    is(copy_on('n3', $sid)->{kind} // 'none', 'D', 'destroy: the primary on n3 is a tombstone');
    ok(MsmTest::wait_until(sub { (copy_on('n1', $sid)->{kind} // '') eq 'D' }, timeout => 5),
       'destroy: the backup on n1 is a tombstone too')
        or diag('n1 holds: ' . explain(copy_on('n1', $sid)));
}

# ------------------------------------------------ backup node dead: next live node
# n2 stopped: n1's backups go to n3; a new session on n1 or n3 gets its backup on
# the other one of them.
my $mark = MsmTest::log_mark();
$mc{n2}->stop;
ok(!MsmTest::port_open($PORT{n2}), 'n2 stopped');

sub backup_has {        # a backup copy on $node of the session of $sid, holding $val
    my ($node, $sid, $val) = @_;
    return MsmTest::wait_until(sub {
        my $c = copy_on($node, $sid);
        ($c->{primary} // '') ne $node && ($c->{payload} // '') =~ /data=\Q$val\E/;
    }, timeout => 5);
}

SKIP: {
    skip 'no session on n1', 6 unless $s1;
    my $key = $s1->{sid};
    # (a) the first write after n2 died: mod_msm does not know yet that n2 is dead;
    # its backup write to n2 fails, and the backup must go on to the next live node
    my $val = 'nb1-' . MsmTest::random_hex();
    my $r = $s1->{c}->get("/msm/app.cgi?op=set&k=data&v=$val");
    is($r->status, 200, 'n2 stopped: write of the n1 session answers 200');
    ok(backup_has('n3', $key, $val),
       '(a) first write after n2 died: backup on n3, the next live node')
        or diag("n3 holds: " . ($mc{n3}->get(MsmTest::session_key($key)) // 'missing'));
    ok(MsmTest::wait_until(sub { !MsmTest::node_states()->{n2} }, timeout => 5),
       'mod_msm marked n2 dead');

    # (b) n2 known dead and not due for a probe: skipped. A failed probe (a read of
    # a session on n2) restarts the MsmNodeRetry interval just before the write.
    my $p = MsmTest::client();
    $p->cookie(MSMSESSION => MsmTest::random_hex() . '-n2');
    $p->get('/msm/app.cgi?op=read');
    $val = 'nb2-' . MsmTest::random_hex();
    $r = $s1->{c}->get("/msm/app.cgi?op=set&k=data&v=$val");
    ok($r->status == 200 && backup_has('n3', $key, $val),
       '(b) n2 known dead (within MsmNodeRetry): the backup goes to n3');

    # (c) n2 dead and due for a probe (MsmNodeRetry 1 s passed): the write probes n2
    # with the backup; the probe fails, and the backup must still reach n3
    sleep 1.3;
    $val = 'nb3-' . MsmTest::random_hex();
    $r = $s1->{c}->get("/msm/app.cgi?op=set&k=data&v=$val");
    ok($r->status == 200 && backup_has('n3', $key, $val),
       '(c) n2 dead, probe due: the backup still reaches n3');
    like(copy_on('n1', $key)->{payload} // '', qr/data=\Q$val\E/, 'the primary on n1 holds every write');
}

# new sessions while n2 is dead: created one after the other (n2 gets probed once a
# second meanwhile), then every backup checked
my (%seen_new, @new);
for my $i (1 .. 40) {
    my $s = new_session("nd$i") or next;
    push @new, $s;
    $seen_new{ $s->{node} }++;
    last if $seen_new{n1} && $seen_new{n3} && @new >= 6;
    sleep 0.25;
}
my ($ok_new, $bad_new) = (0, '');
for my $s (@new) {
    my $want = $s->{node} eq 'n1' ? 'n3' : 'n1';
    my $bak = MsmTest::session_key($s->{sid});
    if ($s->{node} eq 'n2') { $bad_new .= " $s->{sid}(on dead n2)"; next }
    if (MsmTest::wait_until(sub { (copy_on($want, $s->{sid})->{primary} // '') eq $s->{node} }, timeout => 5)) { $ok_new++ }
    else { $bad_new .= " $s->{sid}(copies on: " . (where($bak) || 'nowhere') . ")" }
}
ok($seen_new{n1} && $seen_new{n3} && !$seen_new{n2},
   'n2 dead: new sessions on n1 and n3 only (' . join(' ', map { "$_=" . ($seen_new{$_} // 0) } @ORDER) . ')');
is($bad_new, '', "n2 dead: $ok_new of " . scalar(@new)
   . ' new sessions have their backup on the next live node (n1->n3, n3->n1)');

my $log = MsmTest::log_since($mark);
my @down = $log =~ /MSM00101: memcached node n2 /g;
is(scalar @down, 1, 'MSM00101 logged once for n2');

# ------------------------------------------------ n2 back (empty): used again
$mc{n2}->restart;
ok(MsmTest::wait_nodes_live(\@ORDER), 'n2 restarted (empty) and live again');
SKIP: {
    skip 'no session on n1', 1 unless $s1;
    my $val = 'back-' . MsmTest::random_hex();
    $s1->{c}->get("/msm/app.cgi?op=set&k=data&v=$val");
    ok(backup_has('n2', $s1->{sid}, $val),
       'n2 back: the n1 session\'s backup goes to n2 again');
}
