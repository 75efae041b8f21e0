# Observability (issue 7): the msm-status handler (JSON and Prometheus text),
# the mod_status section and the error_log levels.
#
#  - JSON: shape of "counters" and "nodes"; a scripted sequence moves the
#    counters by exactly the documented amounts (create, read, unchanged write,
#    modify, destroy, parallel reads served by several children, a node killed
#    and the session relocated from its backup, the node coming back after
#    MsmNodeRetry);
#  - node ops == the operations memcached itself counted (stats cmd_get +
#    cmd_set + cmd_touch + delete_hits + delete_misses; cmd_set includes add and
#    cas) in a quiet window, per node, and the per-request costs of the
#    storage design (src/msm_store.c; the once-a-second read of the published
#    node failures, "t:msm-failures", is not a request's cost and is left out
#    of those, not of the per-node comparison); latency buckets sum to ops;
#  - Prometheus text: a strict format check in Perl (and `promtool check
#    metrics` when promtool is installed: Debian 12 ships it in the package
#    "prometheus", which the suite does not install);
#  - mod_status: /server-status has a "mod_msm" section, ?auto has
#    "Msm_<counter>: N" lines equal to the JSON values;
#  - log: node down (MSM00101) at warn, back (MSM00103) at notice, once each;
#    plain requests add no [msm:info] or higher line (msm runs at debug here);
#    sessions are named by their tag (MSM00110), never by their id.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use JSON::PP ();
use Time::HiRes qw(time sleep);

plan tests => 80, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my %PORT = (n1 => 21301, n2 => 21302, n3 => 21303);
my @NODES = qw(n1 n2 n3);
my %mc = map { $_ => MsmTest::memcached(port => $PORT{$_}) } @NODES;

my @COUNTERS = qw(created load_hit load_miss saved skipped_unmodified deleted relocated
                  backup_reads backup_hits local_hits takeovers lock_acquired lock_waits
                  lock_wait_us lock_timeouts lock_lost too_large dropped_readonly
                  regenerated unavailable);
my @NODE_KEYS = qw(list id address transport tls live since ops errors timeouts tls_handshakes
                   tls_resumed latency_sum_us latency_buckets);
my @BOUNDS = qw(0.0001 0.0005 0.001 0.005 0.01 0.05 0.1 0.5 1 +Inf);
# what memcached counts per operation mod_msm sends: gats/touch -> cmd_touch,
# gets -> cmd_get, set/add/cas -> cmd_set, delete -> delete_hits|delete_misses
my @MC_OPS = qw(cmd_get cmd_set cmd_touch delete_hits delete_misses);
my $ID = qr/^([0-9a-f]{32})-(n[123])$/;

my $SC = MsmTest::client();      # the status reader (no cookies)

sub status_json {
    my $r = $SC->get('/msm-status');
    return $r->status == 200 ? $r->json : undef;
}

sub counters {
    my $j = status_json() or return {};
    return $j->{counters} || {};
}

# the nodes n1-n3 of the main server's list: id => node hash (summed over
# lists, should a list be repeated)
sub main_nodes {
    my $j = shift // status_json();
    my %n;
    for my $n (@{ ($j && $j->{nodes}) || [] }) {
        my $id = $n->{id} // '';
        next unless $PORT{$id} && ($n->{address} // '') eq "127.0.0.1:$PORT{$id}";
        $n{$id} = $n;
    }
    return \%n;
}

sub node_ops { my $n = main_nodes(); return { map { $_ => $n->{$_} ? $n->{$_}{ops} : -1 } @NODES } }
sub sum { my $t = 0; $t += $_ for @_; $t }

sub mc_ops {
    my %o;
    for my $id (@NODES) {
        my $s = eval { $mc{$id}->stats } || {};
        $o{$id} = sum(map { $s->{$_} // 0 } @MC_OPS);
    }
    return \%o;
}

# of those, the operations on the published node failures (t:msm-failures), per node
sub failure_ops {
    my %o;
    for my $id (@NODES) {
        my $f = eval { $mc{$id}->failure_ops } || { get => 0, set => 0 };
        $o{$id} = $f->{get} + $f->{set};
    }
    return \%o;
}

# wait until async work (backups after the response) is done: node ops
# unchanged over two polls 0.2 s apart (bounded)
sub settle {
    my $last = '';
    MsmTest::wait_until(sub {
        my $o = node_ops();
        my $k = join ',', map { $o->{$_} } @NODES;
        my $same = $k eq $last;
        $last = $k;
        return $same;
    }, timeout => 6, interval => 0.2);
}

sub delta {
    my ($before, $after) = @_;
    return { map { $_ => ($after->{$_} // 0) - ($before->{$_} // 0) } keys %$after };
}

# deltas of all counters, compared with the expected ones (all others 0)
sub counters_moved_by {
    my ($before, $after, $expect, $name, $ignore) = @_;
    my $d = delta($before, $after);
    my %want = map { $_ => 0 } @COUNTERS;
    %want = (%want, %$expect);
    delete $want{$_} for @{ $ignore || [] };
    my @bad = grep { ($d->{$_} // 'undef') ne $want{$_} } sort keys %want;
    ok(!@bad, "$name: counters move by exactly " . (join(', ', map { "$_ +$expect->{$_}" } sort keys %$expect) || 'nothing'))
        or diag("wrong deltas: " . join(', ', map { "$_ " . ($d->{$_} // 'undef') . " (want $want{$_})" } @bad));
    return $d;
}

sub rand_hex { join '', map { sprintf '%04x', int rand 65536 } 1 .. 8 }

# a read with a well-formed cookie naming $node: probes the node (it is
# the session's primary) even while the node is marked dead once MsmNodeRetry passed
sub probe_node {
    my $node = shift;
    my $c = MsmTest::client();
    $c->cookie(MSMSESSION => rand_hex() . "-$node");
    return $c->get('/msm/app.cgi?op=read');
}

# ------------------------------------------------------------ start: every node live
# (node state persists in the server's shared memory across test files)
my $all_live = MsmTest::wait_until(sub {
    my $n = main_nodes();
    my @dead = grep { !$n->{$_} || !$n->{$_}{live} } @NODES;
    probe_node($_) for @dead;
    return !@dead;
}, timeout => 15, interval => 0.3);
ok($all_live, 'n1-n3 live in the msm-status JSON at the start')
    or diag(explain main_nodes());

# ------------------------------------------------------------ JSON shape
{
    my $r = $SC->get('/msm-status');
    is($r->status, 200, 'GET /msm-status: 200');
    like($r->header('content-type') // '', qr{^application/json}, 'JSON by default (Content-Type)');
    my $j = eval { JSON::PP->new->decode($r->body) };
    ok(ref $j eq 'HASH', 'the body parses with JSON::PP') or diag($r->body);
    $j ||= {};
    is_deeply([sort keys %{ $j->{counters} || {} }], [sort @COUNTERS],
              'counters: exactly the 20 documented names');
    my @badc = grep { !defined $j->{counters}{$_} || $j->{counters}{$_} !~ /^\d+$/ } @COUNTERS;
    ok(!@badc, 'every counter is a non-negative integer') or diag("bad: @badc");
    ok(ref $j->{nodes} eq 'ARRAY' && @{ $j->{nodes} } >= 3, 'nodes: an array (' . scalar(@{ $j->{nodes} || [] }) . ' nodes)');
    my @shape;
    for my $n (@{ $j->{nodes} || [] }) {
        my $id = $n->{id} // '?';
        push @shape, "$id: keys " . join(',', sort keys %$n)
            unless join(',', sort keys %$n) eq join(',', sort @NODE_KEYS);
        push @shape, "$id: live is not a JSON boolean"
            unless JSON::PP::is_bool($n->{live});
        push @shape, "$id: list/since/ops/errors/timeouts/latency_sum_us not integers"
            if grep { ($n->{$_} // '') !~ /^\d+$/ } qw(list since ops errors timeouts latency_sum_us);
        push @shape, "$id: address '$n->{address}'" unless ($n->{address} // '') =~ /^[^:]+:\d+$/;
        push @shape, "$id: transport '" . ($n->{transport} // '') . "'" unless ($n->{transport} // '') eq 'tcp';
        push @shape, "$id: tls is not JSON false" unless JSON::PP::is_bool($n->{tls}) && !$n->{tls};
        push @shape, "$id: tls_handshakes/tls_resumed not 0 without MsmTLS"
            if grep { ($n->{$_} // '') ne '0' } qw(tls_handshakes tls_resumed);
        push @shape, "$id: latency_buckets " . join(',', sort keys %{ $n->{latency_buckets} || {} })
            unless join(',', sort keys %{ $n->{latency_buckets} || {} }) eq join(',', sort @BOUNDS);
    }
    ok(!@shape, 'every node has list,id,address,transport (tcp),tls (false),tls_handshakes,tls_resumed (0),live,since,ops,errors,timeouts,latency_sum_us,latency_buckets (bounds ' . join(' ', @BOUNDS) . ')')
        or diag(join "\n", @shape);
    my $mn = main_nodes($j);
    is_deeply([sort keys %$mn], \@NODES, 'n1-n3 listed with their addresses 127.0.0.1:21301-21303');
    my ($v1) = grep { ($_->{id} // '') eq 'v1' } @{ $j->{nodes} || [] };
    ok($v1 && $v1->{list} != $mn->{n1}{list}, 'the msm_vhost2 nodes are in a list of their own');
}

# ------------------------------------------------------------ the counter sequence
my $c = MsmTest::client();
my %pids;
{
    my $b = counters();
    my $r = $c->get('/msm/app.cgi?op=set&k=color&v=blue');
    my $sid = $r->cookie('MSMSESSION') // '';
    $pids{ $r->pid // 0 }++;
    like($sid, $ID, "create: 200 and a session cookie ($sid)") or diag($r->dump);
    counters_moved_by($b, counters(), { created => 1, saved => 1 }, 'create');

    $b = counters();
    $r = $c->get('/msm/app.cgi?op=read');
    $pids{ $r->pid // 0 }++;
    is_deeply($r->session, { color => 'blue' }, 'read: the session');
    counters_moved_by($b, counters(), { load_hit => 1 }, 'read unchanged');

    $b = counters();
    $r = $c->get('/msm/app.cgi?op=set&k=color&v=blue');
    $pids{ $r->pid // 0 }++;
    ok($r->status == 200 && !defined $r->cookie('MSMSESSION'), 're-set the same value: 200, no Set-Cookie');
    counters_moved_by($b, counters(), { load_hit => 1, skipped_unmodified => 1 }, 're-set same value');

    $b = counters();
    $r = $c->get('/msm/app.cgi?op=set&k=color&v=green');
    $pids{ $r->pid // 0 }++;
    is_deeply($r->session, { color => 'green' }, 'modify: the new value');
    counters_moved_by($b, counters(), { load_hit => 1, saved => 1 }, 'modify');

    # three reads at once: served by several children, all counted
    $b = counters();
    my $base = $c->base;
    my $cookie = $c->cookie('MSMSESSION');
    my @res = MsmTest::parallel(3, sub {
        my $cc = MsmTest::client(base => $base);
        $cc->cookie(MSMSESSION => $cookie);
        my $rr = $cc->get('/msm/app.cgi?op=sleep&ms=600');
        return { status => $rr->status, pid => $rr->pid, color => ($rr->session || {})->{color} };
    }, timeout => 30);
    my %ppids = map { ($_->{pid} // 0) => 1 } @res;
    $pids{$_}++ for keys %ppids;
    ok((grep { ($_->{status} // 0) == 200 && ($_->{color} // '') eq 'green' } @res) == 3
       && keys(%ppids) >= 2,
       '3 parallel reads: all see the session, served by ' . scalar(keys %ppids) . ' children')
        or diag(explain \@res);
    counters_moved_by($b, counters(), { load_hit => 3 }, '3 parallel reads by different children');

    $b = counters();
    $r = $c->get('/msm/app.cgi?op=destroy');
    $pids{ $r->pid // 0 }++;
    ok($r->status == 200 && !defined $c->cookie('MSMSESSION'), 'destroy: cookie cleared')
        or diag($r->dump);
    counters_moved_by($b, counters(), { load_hit => 1, deleted => 1 }, 'destroy');

    $b = counters();
    $r = MsmTest::client()->get('/msm/app.cgi?op=read');
    counters_moved_by($b, counters(), {}, 'a request without a session');

    $b = counters();
    $r = probe_node('n2');
    counters_moved_by($b, counters(), { load_miss => 1, backup_reads => 2 },
                      'unknown id on n2 (backups looked for on n3, n1)');
    delete $pids{0};
    diag('httpd children that served the sequence: ' . scalar(keys %pids));
}

# ------------------------------------------------------------ node ops == memcached ops
{
    settle();
    my $n0 = main_nodes();
    my $o0 = node_ops();
    my $m0 = mc_ops();
    my $c2 = MsmTest::client();
    # name => [request, memcached operations the README gives for it]
    my @steps = (
        [ 'no session'     => sub { MsmTest::client()->get('/msm/app.cgi?op=read') }, 0 ],
        [ 'create'         => sub { $c2->get('/msm/app.cgi?op=set&k=a&v=1') }, 2 ],   # add + backup add
        [ 'read'           => sub { $c2->get('/msm/app.cgi?op=read') }, 1 ],          # gats
        [ 'read'           => sub { $c2->get('/msm/app.cgi?op=read') }, 1 ],
        [ 'unchanged set'  => sub { $c2->get('/msm/app.cgi?op=set&k=a&v=1') }, 1 ],   # gats
        [ 'modify'         => sub { $c2->get('/msm/app.cgi?op=set&k=a&v=2') }, 4 ],   # gats + cas + backup gets + cas
        [ 'destroy'        => sub { $c2->get('/msm/app.cgi?op=destroy') }, 4 ],       # gats + a tombstone (set) on each of 3 nodes
        [ 'unknown id'     => sub { probe_node('n3') }, 3 ],                           # gats + gets on the 2 other nodes
    );
    my (@got, @want, @eq);
    for my $s (@steps) {
        my ($name, $code, $want) = @$s;
        my $mb = mc_ops();
        my $fb = failure_ops();
        my $ob = node_ops();
        my $r = $code->();
        MsmTest::wait_until(sub { sum(values %{ mc_ops() }) - sum(values %$mb) >= $want },
                            timeout => 3) if $want;
        settle();
        my $md = sum(values %{ delta($mb, mc_ops()) });
        my $fd = sum(values %{ delta($fb, failure_ops()) });
        my $od = sum(values %{ delta($ob, node_ops()) });
        push @got, "$name=" . ($md - $fd);
        push @want, "$name=$want";
        push @eq, "$name: node ops +$od, memcached +$md" if $od != $md;
    }
    diag('memcached operations per request: ' . join(', ', @got));
    is(join(', ', @got), join(', ', @want), 'memcached operations per request as documented');
    ok(!@eq, 'each step: node ops grew by what memcached counted') or diag(join "\n", @eq);

    my $o1 = node_ops();
    my $m1 = mc_ops();
    my $n1 = main_nodes();
    my $od = delta($o0, $o1);
    my $md = delta($m0, $m1);
    is_deeply($od, $md, 'per node, over the window: ops delta == memcached cmd_* delta ('
              . join(' ', map { "$_:$od->{$_}/$md->{$_}" } @NODES) . ')');
    my @lat;
    for my $n (@{ (status_json() || {})->{nodes} || [] }) {     # every node of every list
        my $bsum = sum(values %{ $n->{latency_buckets} || {} });
        push @lat, "list $n->{list} $n->{id}: buckets sum $bsum != ops $n->{ops}" if $bsum != $n->{ops};
    }
    for my $id (@NODES) {
        my $n = $n1->{$id};
        my $us = $n->{latency_sum_us} - $n0->{$id}{latency_sum_us};
        push @lat, "$id: latency_sum_us grew by $us for $od->{$id} ops"
            if $od->{$id} > 0 && ($us <= 0 || $us > $od->{$id} * 500_000);
    }
    ok(!@lat, 'every node: latency buckets sum to ops; n1-n3: latency_sum_us grew by (0, ops x MsmOperationTimeout]')
        or diag(join "\n", @lat);
    my @err = grep { $n1->{$_}{errors} != $n0->{$_}{errors} || $n1->{$_}{timeouts} != $n0->{$_}{timeouts} } @NODES;
    ok(!@err, 'no errors or timeouts in the quiet window') or diag("nodes: @err");
}

# ------------------------------------------------------------ no per-request log above debug
{
    my $mark = MsmTest::log_mark();
    my $cl = MsmTest::client();
    my %codes;
    for my $i (1 .. 20) {
        my $q = $i == 1 ? 'op=set&k=x&v=1'            # create
              : $i == 20 ? 'op=destroy'
              : $i % 5 == 0 ? "op=set&k=x&v=$i"        # modify
              : $i % 7 == 0 ? 'op=set&k=x&v=1&k2=y&v2=' # unchanged or modify
              : 'op=read';
        $codes{ $cl->get("/msm/app.cgi?$q")->status }++;
    }
    settle();
    my $log = MsmTest::log_since($mark);
    my @msm  = grep { /\[msm:/ } split /\n/, $log;
    my @loud = grep { /\[msm:(?:info|notice|warn|error|crit|alert|emerg)\]/ || (/MSM\d{5}/ && !/\[msm:(?:debug|trace\d)\]/) } split /\n/, $log;
    is_deeply(\%codes, { 200 => 20 }, '20 plain requests (create, reads, writes, destroy): all 200');
    ok(!@loud, "20 plain requests: no msm line above debug in the error_log ("
       . scalar(@msm) . ' msm lines at debug)') or diag(join "\n", @loud[0 .. ($#loud < 9 ? $#loud : 9)]);
}

# ------------------------------------------------------------ a node dies, the session moves
my ($victim, $t_kill, $down_since);
{
    my $cf = MsmTest::client();
    my $b = counters();
    my $r = $cf->get('/msm/app.cgi?op=set&k=user&v=carol&k2=n&v2=7');
    my $sid = $r->cookie('MSMSESSION') // '';
    my ($hex, $node) = $sid =~ $ID;
    ok($hex, "failover session created ($sid)") or diag($r->dump);
    counters_moved_by($b, counters(), { created => 1, saved => 1 }, 'create (failover session)');
    $node //= 'n1';
    $hex //= '0' x 32;
    $victim = $node;
    my $bnode = $NODES[ ((grep { $NODES[$_] eq $node } 0 .. 2)[0] + 1) % 3 ];
    ok(MsmTest::wait_until(sub { (($mc{$bnode}->copy($hex) || {})->{primary} // '') eq $node }, timeout => 5),
       "its backup (t:$hex, naming $node) is on $bnode");
    settle();

    my $n0 = main_nodes();
    my $mark = MsmTest::log_mark();
    $b = counters();
    $t_kill = time;
    $mc{$node}->kill9;
    $r = $cf->get('/msm/app.cgi?op=read');
    is($r->status, 200, "$node killed (-9), read: 200") or diag($r->dump);
    is_deeply($r->session, { user => 'carol', n => 7 }, 'the session is read from its backup');
    my $nsid = $cf->cookie('MSMSESSION') // '';
    like($nsid, qr/^$hex-(?!$node\b)n[123]$/, "relocated: same id, another node ($nsid)");
    my $a = counters();
    counters_moved_by($b, $a, { load_hit => 1, backup_hits => 1, relocated => 1 },
                      'read after kill -9 (backup_reads: below)', ['backup_reads']);
    cmp_ok($a->{backup_reads} - $b->{backup_reads}, '>=', 1, 'backup_reads grew (by '
           . ($a->{backup_reads} - $b->{backup_reads}) . ')');

    my $n1 = main_nodes();
    ok($n1->{$node} && !$n1->{$node}{live}, "$node: \"live\": false");
    cmp_ok(($n1->{$node}{errors} // 0) - ($n0->{$node}{errors} // 0), '>=', 1,
           "$node: errors grew (+" . (($n1->{$node}{errors} // 0) - ($n0->{$node}{errors} // 0)) . ')');
    $down_since = $n1->{$node}{since} // 0;
    ok($down_since >= int($t_kill) - 1 && $down_since <= time + 1,
       "$node: since is the time it went down ($down_since)");
    my @others = grep { $_ ne $node } @NODES;
    ok(!grep({ !$n1->{$_}{live} } @others), 'the other nodes stay live');

    # more traffic while it is down: no new down message
    my $c3 = MsmTest::client();
    $c3->get('/msm/app.cgi?op=set&k=z&v=1');
    $cf->get('/msm/app.cgi?op=read') for 1 .. 3;
    settle();
    my $log = MsmTest::log_since($mark);
    my @down = grep { /MSM00101/ } split /\n/, $log;
    is(scalar(@down), 1, 'MSM00101 (node down) logged once') or diag(join "\n", @down);
    like($down[0] // '', qr/\[msm:warn\].*MSM00101: memcached node $node \(127\.0\.0\.1:$PORT{$node}\) is down/,
         'MSM00101 at warn, naming the node and its address');
    my $tag = MsmTest::session_tag($hex) // 'none';
    like($log, qr/\[msm:notice\].*MSM00110: session $tag moved to node (?!$node\b)n[123]\b/,
         "MSM00110 (relocated) logged at notice, naming the session by its tag $tag");
    my @ids = MsmTest::ids_in($log);
    is_deeply(\@ids, [], 'no session id (32 hex digits) in the error_log')
        or diag(join "\n", grep { my $l = $_; grep { index($l, $_) >= 0 } @ids } split /\n/, $log);

    # back: restart (empty) and wait MsmNodeRetry; a request for the node probes it
    $mark = MsmTest::log_mark();
    $mc{$node}->restart;
    my $t_restart = time;
    my $back = MsmTest::wait_until(sub {
        probe_node($node);
        my $n = main_nodes();
        return $n->{$node} && $n->{$node}{live} ? $n->{$node} : undef;
    }, timeout => 10, interval => 0.2);
    ok($back, sprintf('%s is live again after restart and MsmNodeRetry (%.1f s)', $node, time - $t_restart));
    cmp_ok(($back || {})->{since} // 0, '>=', $down_since + 1,
           "$node: since moved on by >= MsmNodeRetry (down $down_since, up " . (($back || {})->{since} // 'undef') . ')');
    settle();
    $log = MsmTest::log_since($mark);
    my @up = grep { /MSM00103/ } split /\n/, $log;
    is(scalar(@up), 1, 'MSM00103 (node back) logged once') or diag(join "\n", @up);
    like($up[0] // '', qr/\[msm:notice\].*MSM00103: memcached node $node \(127\.0\.0\.1:$PORT{$node}\) is back/,
         'MSM00103 at notice, naming the node');

    $b = counters();
    $r = $cf->get('/msm/app.cgi?op=read');
    is_deeply($r->session, { user => 'carol', n => 7 }, 'the relocated session reads back');
    counters_moved_by($b, counters(), { load_hit => 1 }, 'read of the relocated session');
}

# ------------------------------------------------------------ Prometheus text
{
    settle();
    my $j = status_json();
    my $r = $SC->get('/msm-status?format=prometheus');
    is($r->status, 200, 'GET /msm-status?format=prometheus: 200');
    like($r->header('content-type') // '', qr{^text/plain; version=0\.0\.4}, 'Content-Type text/plain; version=0.0.4');
    my $text = $r->body;
    like($text, qr/\n\z/, 'ends with a newline');
    my $p = check_prometheus($text);
    ok(!@{ $p->{syntax} }, 'every line is a # HELP, a # TYPE or a well-formed sample')
        or diag(join "\n", @{ $p->{syntax} }[0 .. min(9, $#{ $p->{syntax} })]);
    ok(!@{ $p->{meta} }, 'each family: exactly one # HELP and one # TYPE, before its samples')
        or diag(join "\n", @{ $p->{meta} });
    ok(!@{ $p->{contig} }, 'the samples of a family are contiguous')
        or diag(join "\n", @{ $p->{contig} });
    ok(!@{ $p->{names} }, 'names start with msm_; counters end in _total; types counter/gauge/histogram')
        or diag(join "\n", @{ $p->{names} });
    ok(!@{ $p->{dups} }, 'no sample repeated (same name and labels)') or diag(join "\n", @{ $p->{dups} });
    ok(!@{ $p->{hist} }, 'histograms: le buckets increasing, cumulative counts non-decreasing, +Inf == _count, _sum present')
        or diag(join "\n", @{ $p->{hist} });

    my $fam = $p->{families};
    is_deeply([sort grep { !/^msm_node/ } keys %$fam], [sort map { prom_name($_) } @COUNTERS],
              'one family msm_<counter>_total per JSON counter (lock_wait_us as msm_lock_wait_seconds_total)');
    is_deeply([sort grep { /^msm_node/ } keys %$fam],
              [sort qw(msm_node_up msm_node_state_since_seconds msm_node_operations_total
                       msm_node_errors_total msm_node_timeouts_total msm_node_operation_duration_seconds
                       msm_node_tls_handshakes_total msm_node_tls_resumptions_total)],
              'the node families of the README');
    is($fam->{msm_node_operation_duration_seconds}{type} // '', 'histogram', 'msm_node_operation_duration_seconds is a histogram');
    my @lab;
    for my $f (grep { /^msm_node/ } keys %$fam) {
        for my $s (@{ $fam->{$f}{samples} }) {
            push @lab, "$s->{line}" unless defined $s->{labels}{list} && defined $s->{labels}{node}
                                           && defined $s->{labels}{address}
                                           && ($s->{labels}{transport} // '') eq 'tcp'
                                           && ($s->{labels}{tls} // '') eq 'off';
        }
    }
    for my $f (grep { !/^msm_node/ } keys %$fam) {
        push @lab, $_->{line} for grep { %{ $_->{labels} } } @{ $fam->{$f}{samples} };
    }
    ok(!@lab, 'node samples carry list, node, address, transport and tls labels; session counters none')
        or diag(join "\n", @lab[0 .. min(9, $#lab)]);
    my @les = map { $_->{labels}{le} } grep { $_->{name} =~ /_bucket$/ && ($_->{labels}{node} // '') eq 'n1'
                                                 && ($_->{labels}{address} // '') eq '127.0.0.1:21301' }
              @{ $fam->{msm_node_operation_duration_seconds}{samples} || [] };
    is(join(' ', @les), join(' ', @BOUNDS), 'histogram buckets: le ' . join(' ', @BOUNDS) . ' (0.1 ms .. 1 s)');

    # the same numbers as the JSON read just before (nothing ran in between)
    my @diff;
    for my $k (@COUNTERS) {
        my ($s) = @{ $fam->{prom_name($k)}{samples} || [] };
        my $want = $k eq 'lock_wait_us' ? $j->{counters}{$k} / 1e6 : $j->{counters}{$k};
        push @diff, "$k: json $j->{counters}{$k} prom " . ($s ? $s->{value} : 'none')
            unless $s && abs($s->{value} - $want) < 1e-6;
    }
    for my $n (@{ $j->{nodes} }) {
        my %l = (list => $n->{list}, node => $n->{id}, address => $n->{address},
                 transport => $n->{transport}, tls => $n->{tls} ? 'on' : 'off');
        my $key = "list=$n->{list},node=$n->{id},address=$n->{address},transport=$n->{transport},tls=$l{tls}";
        my %want = (msm_node_up => $n->{live} ? 1 : 0, msm_node_state_since_seconds => $n->{since},
                    msm_node_operations_total => $n->{ops}, msm_node_errors_total => $n->{errors},
                    msm_node_timeouts_total => $n->{timeouts},
                    msm_node_tls_handshakes_total => $n->{tls_handshakes},
                    msm_node_tls_resumptions_total => $n->{tls_resumed},
                    msm_node_operation_duration_seconds_count => $n->{ops},
                    msm_node_operation_duration_seconds_sum => $n->{latency_sum_us} / 1e6);
        for my $m (sort keys %want) {
            my $v = $p->{by_key}{ pkey($m, %l) };
            push @diff, "$m\{$key}: json $want{$m} prom " . ($v // 'none')
                unless defined $v && abs($v - $want{$m}) <= ($m =~ /_sum$/ ? 1e-6 : 0);
        }
        my $cum = 0;
        for my $bd (@BOUNDS) {
            $cum += $n->{latency_buckets}{$bd} // 0;
            my $v = $p->{by_key}{ pkey('msm_node_operation_duration_seconds_bucket', %l, le => $bd) };
            push @diff, "bucket le=$bd {$key}: json cumulative $cum prom " . ($v // 'none')
                unless defined $v && $v == $cum;
        }
    }
    ok(!@diff, 'Prometheus values equal the JSON ones (counters, node up/since/ops/errors/timeouts, histogram)')
        or diag(join "\n", @diff[0 .. min(19, $#diff)]);
    my ($vup) = grep { $_->{labels}{node} eq $victim } @{ $fam->{msm_node_up}{samples} || [] };
    ok($vup && $vup->{value} == 1, "msm_node_up{node=\"$victim\"} 1 after its return");

    # promtool (package "prometheus" on Debian 12) when installed
    my ($promtool) = grep { $_ && -x $_ } $ENV{MSM_PROMTOOL},
                     (map { "$_/promtool" } split /:/, $ENV{PATH} // ''), '/usr/bin/promtool';
    SKIP: {
        skip 'promtool not installed (Debian 12: package prometheus); the strict Perl check above applies', 2
            unless $promtool;
        my $f = MsmTest::tmp_dir() . "/50_status.prom";
        open my $fh, '>', $f or die "$f: $!";
        print $fh $text;
        close $fh;
        my $out = `$promtool check metrics < '$f' 2>&1`;
        my $rc = $? >> 8;
        # exit 1: the text does not parse; 3: it parses, with lint problems
        ok(($rc == 0 || $rc == 3) && $out !~ /parsing error/i, "promtool check metrics ($promtool): parses")
            or diag("exit $rc: $out");
        is($rc, 0, 'promtool check metrics: no lint problem') or diag($out);
    }
}

# ------------------------------------------------------------ mod_status
{
    my $r = $SC->get('/server-status');
    is($r->status, 200, 'GET /server-status: 200');
    like($r->body, qr/<h2>mod_msm[^<]*<\/h2>/, '/server-status has a mod_msm section');
    like($r->body, qr/<td>n1<\/td><td>127\.0\.0\.1:21301<\/td><td>live<\/td>/,
         '... with the node table (n1 live)');

    my $j = status_json();
    $r = $SC->get('/server-status?auto');
    is($r->status, 200, 'GET /server-status?auto: 200');
    my %auto = $r->body =~ /^Msm_(\w+): (\d+)$/mg;
    like($r->body, qr/^Msm_created: \d+$/m, '?auto has "Msm_created: N"');
    is_deeply([sort keys %auto], [sort @COUNTERS], '?auto: a Msm_<name> line per counter');
    my @d = grep { ($auto{$_} // -1) != $j->{counters}{$_} } @COUNTERS;
    ok(!@d, '?auto values equal the JSON counters') or diag(join ', ', map { "$_ auto=$auto{$_} json=$j->{counters}{$_}" } @d);
    like($r->body, qr/^MsmNode\d+_n1: live \d+ ops \d+ errors$/m, '?auto has the node lines (MsmNode<list>_n1: live N ops N errors)');
}

# ------------------------------------------------------------ other methods
{
    my $r = $SC->post('/msm-status', 'x=1');
    is($r->status, 405, 'POST /msm-status: 405');
}

sub min { $_[0] < $_[1] ? $_[0] : $_[1] }

# a sample's identity: name and labels in sorted order
sub pkey {
    my ($name, %l) = @_;
    return "$name|" . join(',', map { "$_=$l{$_}" } sort keys %l);
}

# Strict Prometheus text format (0.0.4) check. Returns lists of problems and
# the parsed families.
sub check_prometheus {
    my $text = shift;
    my $NAME  = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
    my $LNAME = qr/[a-zA-Z_][a-zA-Z0-9_]*/;
    my $LVAL  = qr/"(?:[^"\\]|\\.)*"/;
    my $VALUE = qr/-?[0-9.eE+-]+|[+-]Inf|NaN/;
    my %p = (syntax => [], meta => [], contig => [], names => [], dups => [], hist => [],
             families => {}, by_key => {});
    my $fam = $p{families};
    my (%done, %seen, $current);
    my @lines = split /\n/, $text, -1;
    pop @lines if @lines && $lines[-1] eq '';
    my $ln = 0;
    # the family a sample belongs to: its own name, or a histogram's without suffix
    my $family_of = sub {
        my $n = shift;
        return $n if $fam->{$n};
        (my $base = $n) =~ s/_(bucket|sum|count)$//;
        return $base if $base ne $n && $fam->{$base} && ($fam->{$base}{type} // '') eq 'histogram';
        return $n;
    };
    for my $line (@lines) {
        $ln++;
        if ($line =~ /^# (HELP|TYPE) ($NAME) (.*)$/) {
            my ($kind, $name, $rest) = ($1, $2, $3);
            my $f = $fam->{$name} ||= { samples => [], help => 0, type_lines => 0 };
            if (@{ $f->{samples} }) { push @{ $p{meta} }, "line $ln: # $kind $name after its samples" }
            if ($kind eq 'HELP') {
                $f->{help}++;
                push @{ $p{syntax} }, "line $ln: empty HELP" unless length $rest;
            }
            else {
                $f->{type_lines}++;
                $f->{type} = $rest;
                push @{ $p{names} }, "line $ln: type '$rest'" unless $rest =~ /^(counter|gauge|histogram)$/;
            }
            if (defined $current && $current ne $name) { $done{$current} = 1 }
            push @{ $p{contig} }, "line $ln: $name comes back after other families" if $done{$name};
            $current = $name;
            next;
        }
        if ($line =~ /^#/ || $line eq '') {
            push @{ $p{syntax} }, "line $ln: unexpected '$line'";
            next;
        }
        unless ($line =~ /^($NAME)(\{$LNAME=$LVAL(?:,$LNAME=$LVAL)*\})? ($VALUE)$/) {
            push @{ $p{syntax} }, "line $ln: not a sample: $line";
            next;
        }
        my ($name, $lab, $val) = ($1, $2 // '', $3);
        push @{ $p{syntax} }, "line $ln: value '$val' is not a number"
            unless $val =~ /^(?:[+-]Inf|NaN|-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)$/;
        my %labels;
        my @order;
        while ($lab =~ /($LNAME)=("(?:[^"\\]|\\.)*")/g) {
            my ($k, $v) = ($1, $2);
            $v = substr($v, 1, -1);
            $v =~ s/\\(.)/$1 eq 'n' ? "\n" : $1/ge;
            push @{ $p{syntax} }, "line $ln: label $k repeated" if exists $labels{$k};
            $labels{$k} = $v;
            push @order, $k;
        }
        my $f = $family_of->($name);
        unless ($fam->{$f} && ($fam->{$f}{help} || $fam->{$f}{type_lines})) {
            push @{ $p{meta} }, "line $ln: sample $name without # HELP/# TYPE before it";
            $fam->{$f} ||= { samples => [], help => 0, type_lines => 0 };
        }
        if (defined $current && $current ne $f) { $done{$current} = 1 }
        push @{ $p{contig} }, "line $ln: $f samples interleaved with another family" if $done{$f};
        $current = $f;
        my $num = $val =~ /Inf/ ? ($val =~ /^-/ ? -9**9**9 : 9**9**9) : $val + 0;
        push @{ $fam->{$f}{samples} }, { name => $name, labels => \%labels, value => $num, line => $line };
        my $key = pkey($name, %labels);
        push @{ $p{dups} }, "line $ln: $line" if $seen{$key}++;
        $p{by_key}{$key} = $num;
    }
    for my $name (sort keys %$fam) {
        my $f = $fam->{$name};
        push @{ $p{meta} }, "$name: $f->{help} # HELP lines" if $f->{help} != 1;
        push @{ $p{meta} }, "$name: $f->{type_lines} # TYPE lines" if $f->{type_lines} != 1;
        push @{ $p{meta} }, "$name: no samples" unless @{ $f->{samples} };
        push @{ $p{names} }, "$name: does not start with msm_" unless $name =~ /^msm_/;
        push @{ $p{names} }, "$name: counter not ending in _total"
            if ($f->{type} // '') eq 'counter' && $name !~ /_total$/;
        push @{ $p{names} }, "$name: _total but not a counter"
            if $name =~ /_total$/ && ($f->{type} // '') ne 'counter';
        my @wrong = grep { $_->{name} ne $name && !(($f->{type} // '') eq 'histogram'
                           && $_->{name} =~ /^\Q$name\E_(bucket|sum|count)$/) } @{ $f->{samples} };
        push @{ $p{names} }, "$name: sample $_->{name}" for @wrong;
        next unless ($f->{type} // '') eq 'histogram';
        # per label set (without le): buckets, sum, count
        my %series;
        for my $s (@{ $f->{samples} }) {
            my %l = %{ $s->{labels} };
            my $le = delete $l{le};
            my $sk = join ',', map { "$_=$l{$_}" } sort keys %l;
            my $kind = ($s->{name} =~ /_(bucket|sum|count)$/)[0] // 'bare';
            if ($kind eq 'bucket') {
                if (!defined $le) { push @{ $p{hist} }, "$s->{line}: bucket without le"; next }
                push @{ $series{$sk}{buckets} }, [$le, $s->{value}];
            }
            else {
                push @{ $p{hist} }, "$s->{line}: le on a non-bucket sample" if defined $le;
                $series{$sk}{$kind} = $s->{value};
            }
        }
        for my $sk (sort keys %series) {
            my $s = $series{$sk};
            my @b = @{ $s->{buckets} || [] };
            push @{ $p{hist} }, "$name\{$sk}: no buckets" unless @b;
            push @{ $p{hist} }, "$name\{$sk}: no _sum" unless defined $s->{sum};
            push @{ $p{hist} }, "$name\{$sk}: no _count" unless defined $s->{count};
            next unless @b;
            push @{ $p{hist} }, "$name\{$sk}: last bucket le=\"$b[-1][0]\", not +Inf" unless $b[-1][0] eq '+Inf';
            for my $i (1 .. $#b) {
                my ($pl, $pv) = @{ $b[$i - 1] };
                my ($l, $v) = @{ $b[$i] };
                my $pn = $pl eq '+Inf' ? 9**9**9 : $pl;
                my $n  = $l  eq '+Inf' ? 9**9**9 : $l;
                push @{ $p{hist} }, "$name\{$sk}: le $l after $pl (not increasing)" unless $n > $pn;
                push @{ $p{hist} }, "$name\{$sk}: le=$l count $v < $pv (not cumulative)" if $v < $pv;
            }
            push @{ $p{hist} }, "$name\{$sk}: +Inf $b[-1][1] != _count " . ($s->{count} // 'none')
                if defined $s->{count} && $b[-1][0] eq '+Inf' && $b[-1][1] != $s->{count};
        }
    }
    return \%p;
}

# the Prometheus name of a JSON counter: msm_<name>_total, but a time counter
# is exported in seconds (promtool: no abbreviated units in names)
sub prom_name {
    my $k = shift;
    return $k eq 'lock_wait_us' ? 'msm_lock_wait_seconds_total' : "msm_${k}_total";
}
