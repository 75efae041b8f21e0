# Backup copies (issue 4): every write of session <hex>-nX also stores
# bak:t:<hex>-nX on the next node in MsmNodes order (n1->n2, n2->n3, n3->n1),
# with the same value and an expiry not shorter than the primary's; destroying
# the session deletes both keys; with the backup node dead the backup goes to
# the next live node.
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
        my $key = "t:$s->{sid}";
        my $bak = "bak:$key";
        my $pv = $mc{$node}->get($key);
        like($pv // '', qr/(^|&)data=\Q$s->{val}\E(&|$)/, "$node: primary $key holds the session");
        # backups are written after the response (MsmBackupAsync On)
        my $bv = MsmTest::wait_until(sub { $mc{$next}->get($bak) }, timeout => 5);
        ok(defined $bv, "$node: backup $bak is on the next node $next")
            or diag("$bak found on: " . where($bak));
        is($bv, $pv, "$node: backup value == primary value");
        ok(!has_key($other, $bak) && !has_key($node, $bak) && !has_key($next, $key)
           && !has_key($other, $key),
           "$node: only the primary on $node and the backup on $next (no copy on $other)");
        my ($pt, $bt) = ($mc{$node}->ttl($key), $mc{$next}->ttl($bak));
        diag("$node: primary ttl " . ($pt // 'none') . " s, backup ttl " . ($bt // 'none') . ' s');
        ok(defined $pt && $pt > 0 && defined $bt && $bt >= $pt,
           "$node: backup expiry >= primary expiry (" . ($bt // 'none') . ' >= ' . ($pt // 'none') . ')');
    }
}

# ------------------------------------------------ an update rewrites both copies
my $s1 = $by_node{n1}[0];
SKIP: {
    skip 'no session on n1', 5 unless $s1;
    my $key = "t:$s1->{sid}";
    my $val = 'upd-' . MsmTest::random_hex();
    my $r = $s1->{c}->get("/msm/app.cgi?op=set&k=data&v=$val");
    is($r->status, 200, 'update of the n1 session');
    ok(!defined $r->cookie('MSMSESSION'), 'update: cookie unchanged (no Set-Cookie)');
    like($mc{n1}->get($key) // '', qr/data=\Q$val\E/, 'update: primary on n1 holds the new value');
    ok(MsmTest::wait_until(sub { ($mc{n2}->get("bak:$key") // '') =~ /data=\Q$val\E/ }, timeout => 5),
       'update: backup on n2 holds the new value');
    $s1->{val} = $val;
    # a read refreshes the primary's expiry (gats) only: the backup still outlives it
    $r = $s1->{c}->get('/msm/app.cgi?op=read');
    my ($pt, $bt) = ($mc{n1}->ttl($key), $mc{n2}->ttl("bak:$key"));
    ok($r->status == 200 && defined $pt && defined $bt && $bt >= $pt,
       "after a read: backup ttl $bt >= primary ttl $pt");
}

# ------------------------------------------------ destroy deletes both copies (n3: wrap to n1)
my $s3 = $by_node{n3}[0];
SKIP: {
    skip 'no session on n3', 5 unless $s3;
    my $key = "t:$s3->{sid}";
    ok(MsmTest::wait_until(sub { has_key('n1', "bak:$key") }, timeout => 5),
       'n3 session: backup present on n1 before destroy');
    my $r = $s3->{c}->get('/msm/app.cgi?op=destroy');
    is($r->status, 200, 'destroy');
    is_deeply($r->session, {}, 'destroy: empty session');
    ok(!has_key('n3', $key), 'destroy: primary deleted from n3');
    ok(MsmTest::wait_until(sub { !has_key('n1', "bak:$key") }, timeout => 5),
       'destroy: backup deleted from n1') or diag('backup still on: ' . where("bak:$key"));
}

# ------------------------------------------------ backup node dead: next live node
# n2 stopped: n1's backups go to n3; a new session on n1 or n3 gets its backup on
# the other one of them.
my $mark = MsmTest::log_mark();
$mc{n2}->stop;
ok(!MsmTest::port_open($PORT{n2}), 'n2 stopped');

sub backup_has {
    my ($node, $key, $val) = @_;
    return MsmTest::wait_until(sub { ($mc{$node}->get("bak:$key") // '') =~ /data=\Q$val\E/ },
                               timeout => 5);
}

SKIP: {
    skip 'no session on n1', 6 unless $s1;
    my $key = "t:$s1->{sid}";
    # (a) the first write after n2 died: mod_msm does not know yet that n2 is dead;
    # its backup write to n2 fails, and the backup must go on to the next live node
    my $val = 'nb1-' . MsmTest::random_hex();
    my $r = $s1->{c}->get("/msm/app.cgi?op=set&k=data&v=$val");
    is($r->status, 200, 'n2 stopped: write of the n1 session answers 200');
    ok(backup_has('n3', $key, $val),
       '(a) first write after n2 died: backup on n3, the next live node')
        or diag("bak:$key on n3: " . ($mc{n3}->get("bak:$key") // 'missing'));
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
    like($mc{n1}->get($key) // '', qr/data=\Q$val\E/, 'the primary on n1 holds every write');
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
    my $bak = "bak:t:$s->{sid}";
    if ($s->{node} eq 'n2') { $bad_new .= " $s->{sid}(on dead n2)"; next }
    if (MsmTest::wait_until(sub { has_key($want, $bak) }, timeout => 5)) { $ok_new++ }
    else { $bad_new .= " $s->{sid}(backup on: " . (where($bak) || 'nowhere') . ")" }
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
    my $key = "t:$s1->{sid}";
    my $val = 'back-' . MsmTest::random_hex();
    $s1->{c}->get("/msm/app.cgi?op=set&k=data&v=$val");
    ok(MsmTest::wait_until(sub { ($mc{n2}->get("bak:$key") // '') =~ /data=\Q$val\E/ }, timeout => 5),
       'n2 back: the n1 session\'s backup goes to n2 again');
}
