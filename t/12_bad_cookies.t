# Strict cookies: any MSMSESSION value that is not <32 lowercase hex>-<node>[.<route>]
# (node and route 1-16 of [A-Za-z0-9_], at most 64 bytes) is no session at all.
# For each malformed value (sent raw over a socket, so that nothing is cleaned up by
# a client library):
#   - a read answers 200 with an empty session and costs no memcached operation
#     (stats deltas on n1-n3: cmd_get + cmd_touch + cmd_set == 0, nothing else either);
#   - the httpd child that answered is still alive;
#   - a write (op=set) answers 200 with a NEW well-formed id, without looking up the
#     bad value first.
# Afterwards: every key in memcached is built from a well-formed id, the error_log
# shows no crash, never the bad values and never a session id (only 8-hex tags). A
# well-formed id with a node id that is not configured ("zz") is looked up on every
# node (each copy is under the same key t:<hex>), a write issues a new id, and a
# request that finds no session leaves the cookie alone.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use IO::Select ();
use IO::Socket::INET ();
use Time::HiRes qw(time sleep);

my %port = (n1 => 21301, n2 => 21302, n3 => 21303);
my $WELL = qr/^([0-9a-f]{32})-(n[123])$/;

# a valid hex that holds letters (so that upper-casing changes it)
my $H;
do { $H = MsmTest::random_hex() } until $H =~ /[a-f]/;

# [ name, Cookie header value(s) (raw; may hold CR LF) ]
my @cases = (
    ['path traversal ../../etc/passwd',      'MSMSESSION=../../etc/passwd'],
    ['valid hex + traversal node',            "MSMSESSION=$H-../../etc/passwd"],
    ['space inside the hex',                  'MSMSESSION=' . substr($H, 0, 16) . ' ' . substr($H, 17) . '-n1'],
    ['space before the node',                 "MSMSESSION=$H- n1"],
    ['<valid hex>-n1 extra',                  "MSMSESSION=$H-n1 extra"],
    ['CRLF injection (raw header split)',     "MSMSESSION=x\r\nX-Injected: yes"],
    ['CRLF + folded continuation',            "MSMSESSION=$H-n1\r\n\tinjected"],
    ['url-encoded CRLF + Set-Cookie',         "MSMSESSION=$H-n1%0d%0aSet-Cookie:%20evil=1"],
    ['memcached command injection',           "MSMSESSION=$H-n1%20delete%20x"],
    ['300 bytes',                             'MSMSESSION=' . ('a' x 300)],
    ['300 bytes starting with a valid id',    "MSMSESSION=$H-n1" . ('a' x 265)],
    ['uppercase hex',                         'MSMSESSION=' . uc($H) . '-n1'],
    ['31 hex digits',                         'MSMSESSION=' . substr($H, 0, 31) . '-n1'],
    ['33 hex digits',                         "MSMSESSION=${H}a-n1"],
    ['non-hex digits',                        'MSMSESSION=' . ('g' x 32) . '-n1'],
    ['missing node',                          "MSMSESSION=$H-"],
    ['no dash, no node',                      "MSMSESSION=$H"],
    ['node with a trailing dot',              "MSMSESSION=$H-n1."],
    ['node id starting with a dot',           "MSMSESSION=$H-.n1"],
    ['two dots',                              "MSMSESSION=$H-n1.r.x"],
    ['node id of 17 chars',                   "MSMSESSION=$H-" . ('n' x 17)],
    ['route of 17 chars',                     "MSMSESSION=$H-n1." . ('r' x 17)],
    ['slash in the node',                     "MSMSESSION=$H-n1/x"],
    ['slash before the node',                 "MSMSESSION=$H-/n1"],
    ['unicode node (UTF-8 bytes)',            "MSMSESSION=$H-n\xc3\xa91"],
    ['unicode only',                          "MSMSESSION=\xc3\xa9\xf0\x9f\x8d\xaa"],
    ['percent-encoded NUL',                   "MSMSESSION=$H-n1%00"],
    ['quoted value',                          qq{MSMSESSION="$H-n1"}],
    ['semicolon: value ends before the id',   "MSMSESSION=abc;$H-n1"],
    ['empty value',                           'MSMSESSION='],
    ['leading dash',                          "MSMSESSION=-$H-n1"],
    ['duplicate, both malformed',             'MSMSESSION=bad1; MSMSESSION=bad2'],
    # filled in below with two real, different session ids
    ['duplicate, two different valid ids',    undef],
);

plan tests => 1 + 5 * @cases + 18,
    need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my %mc = map { $_ => MsmTest::memcached(port => $port{$_}) } sort keys %port;
ok(MsmTest::wait_nodes_live([qw(n1 n2 n3)], timeout => 10), 'n1-n3 live for mod_msm');

my ($PORT) = MsmTest::url() =~ /:(\d+)$/;

# HTTP/1.0 request over a plain socket, Cookie header sent exactly as given
sub raw_get {
    my ($path, $cookie) = @_;
    my $t0 = time;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $PORT, Proto => 'tcp',
                                  Timeout => 5)
        or return { status => 599, error => "connect: $!" };
    my $req = "GET $path HTTP/1.0\r\nHost: 127.0.0.1:$PORT\r\nUser-Agent: msm-test/1\r\n"
            . (defined $cookie ? "Cookie: $cookie\r\n" : '') . "\r\n";
    syswrite($s, $req);
    my ($buf, $sel, $deadline) = ('', IO::Select->new($s), time + 15);
    while (time < $deadline) {
        last unless $sel->can_read($deadline - time);
        my $n = sysread($s, $buf, 65536, length $buf);
        last unless $n;
    }
    close $s;
    my ($head, $body) = split /\r\n\r\n/, $buf, 2;
    my %r = (status => 599, set_cookies => [], body => $body // '', elapsed => time - $t0);
    my @lines = split /\r\n/, $head // '';
    my $sl = shift @lines // '';
    $r{status} = $1 if $sl =~ m{^HTTP/\d\.\d (\d{3})};
    for (@lines) {
        push @{ $r{set_cookies} }, $1 if /^Set-Cookie:\s*(.*)$/i;
        $r{injected} = 1 if /^X-Injected:/i || /^Set-Cookie:\s*evil/i;
    }
    $r{json} = eval { JSON::PP->new->decode($r{body}) };
    return \%r;
}
require JSON::PP;

sub new_cookie {
    my $r = shift;
    my @v = map { /^MSMSESSION=([^;]*)/ ? $1 : () } @{ $r->{set_cookies} };
    return @v == 1 ? $v[0] : undef;
}

# two real sessions for the "duplicate valid ids" case
my @real;
for (1 .. 2) {
    my $cl = MsmTest::client();
    push @real, $cl->get('/msm/app.cgi?op=set&k=real&v=' . $_)->cookie('MSMSESSION') // "none$_";
}
$cases[-1][1] = "MSMSESSION=$real[0]; MSMSESSION=$real[1]";

my $mark = MsmTest::log_mark();
my (%pids, @new_ids, @report);
my $s_prev = MsmTest::mc_ops_settled(\%mc, quiet => 0.3);
for my $case (@cases) {
    my ($name, $cookie) = @$case;

    # ---- read
    my $r = raw_get('/msm/app.cgi?op=read', $cookie);
    my $s1 = MsmTest::mc_ops_settled(\%mc, quiet => 0.2);
    my $d = MsmTest::mc_ops_delta($s_prev, $s1);
    $s_prev = $s1;
    my $pid = ref $r->{json} eq 'HASH' ? $r->{json}{pid} : undef;
    is($r->{status}, 200, "[$name] read: 200")
        or diag(substr($r->{body}, 0, 300));
    is($d->{_sum}{get} + $d->{_sum}{touch} + $d->{_sum}{set} + $d->{_sum}{total}, 0,
       "[$name] read: no memcached operation (get+touch+set == 0)")
        or diag(MsmTest::mc_ops_str($d));
    ok($pid && kill(0, $pid)
       && ref $r->{json}{session} eq 'HASH' && !%{ $r->{json}{session} }
       && !$r->{injected},
       "[$name] empty session, the child (" . ($pid // '?') . ') still runs, nothing injected')
        or diag(substr($r->{body}, 0, 300));
    $pids{$pid}++ if $pid;

    # ---- write
    my $w = raw_get('/msm/app.cgi?op=set&k=x&v=1', $cookie);
    my $nc = new_cookie($w);
    my $s2;
    MsmTest::wait_until(sub {
        $s2 = MsmTest::mc_ops(\%mc);
        MsmTest::mc_ops_delta($s_prev, $s2)->{_sum}{set} >= 2;      # primary add + backup
    }, timeout => 5);
    $s2 = MsmTest::mc_ops_settled(\%mc, quiet => 0.15);
    my $dw = MsmTest::mc_ops_delta($s_prev, $s2);
    $s_prev = $s2;
    (my $bad = $cookie // '') =~ s/^MSMSESSION=//;
    ok($w->{status} == 200 && defined $nc && $nc =~ $WELL && $nc ne $bad
       && index($bad, substr($nc, 0, 32)) < 0 && @{ $w->{set_cookies} } == 1,
       "[$name] write: 200, one Set-Cookie with a new well-formed id (" . ($nc // 'none') . ')')
        or diag("status $w->{status}; Set-Cookie: @{ $w->{set_cookies} }");
    is($dw->{_sum}{get} + $dw->{_sum}{touch}, 0, "[$name] write: the bad value was not looked up")
        or diag(MsmTest::mc_ops_str($dw));
    push @new_ids, $nc if defined $nc;
    push @report, sprintf('%-40s read %d %s ops  write %d %s', $name, $r->{status},
                          $d->{_sum}{total}, $w->{status}, MsmTest::mc_ops_str($dw));
}
diag("malformed cookies (read status, ops | write status, ops per node):\n" . join("\n", @report));

# ---------------------------------------------------------------- well-formed, unknown node "zz"
{
    my $zhex;
    do { $zhex = MsmTest::random_hex() } until $zhex ne $H;
    my $zz = "$zhex-zz";
    my $r = raw_get('/msm/app.cgi?op=read', "MSMSESSION=$zz");
    my $s1 = MsmTest::mc_ops_settled(\%mc, quiet => 0.3);
    my $d = MsmTest::mc_ops_delta($s_prev, $s1);
    $s_prev = $s1;
    is($r->{status}, 200, 'unknown node "zz": read 200');
    is_deeply($r->{json} && $r->{json}{session}, {}, 'unknown node "zz", no copy anywhere: empty session');
    ok($d->{_sum}{get} >= 1 && $d->{_sum}{get} <= 3,
       "unknown node \"zz\": looked up on the other nodes, each node at most once (gets: $d->{_sum}{get})")
        or diag(MsmTest::mc_ops_str($d));
    # defect fixed: the old module cleared the cookie of a request whose session it did
    # not find; the browser may hold a newer cookie by then, so it is left alone now
    is(scalar(grep { /^MSMSESSION=/ } @{ $r->{set_cookies} }), 0,
       'unknown node "zz", session not found: no Set-Cookie (the cookie is not cleared)')
        or diag("Set-Cookie: @{ $r->{set_cookies} }");
    is($d->{_sum}{touch} + $d->{_sum}{set} + $d->{_sum}{delete}, 0,
       'unknown node "zz": no touch, no write, no delete') or diag(MsmTest::mc_ops_str($d));

    my $w = raw_get('/msm/app.cgi?op=set&k=x&v=1', "MSMSESSION=$zz");
    my $nc = new_cookie($w) // '';
    like($nc, $WELL, "unknown node \"zz\": a write issues a well-formed id ($nc)");
    isnt(substr($nc, 0, 32), $zhex, 'unknown node "zz": ... a NEW one, not the hex of the cookie');
    push @new_ids, $nc if $nc =~ $WELL;

    # a session whose node was removed from MsmNodes but whose backup still exists: the
    # same key t:<hex> on n2, its header naming the removed node zz as primary
    my $rhex;
    do { $rhex = MsmTest::random_hex() } until $rhex ne $zhex && $rhex ne $H;
    ok($mc{n2}->set("t:$rhex", MsmTest::make_copy(primary => 'zz', payload => 'kept=yes'), 60),
       'planted a backup t:<hex> on n2 naming the removed node zz as its primary');
    $s_prev = MsmTest::mc_ops_settled(\%mc, quiet => 0.2);
    my $c = MsmTest::client();
    $c->cookie(MSMSESSION => "$rhex-zz");
    my $rr = $c->get('/msm/app.cgi?op=read');
    is_deeply($rr->session, { kept => 'yes' }, 'removed node: the session is read from its backup');
    my $moved = $rr->cookie('MSMSESSION') // '';
    like($moved, qr/^$rhex-n[123]$/, "removed node: moved to a configured node, same hex ($moved)");
    push @new_ids, $moved if $moved =~ $WELL;
}

# ---------------------------------------------------------------- afterwards
my @keys = map { my $n = $_; map { "$n:$_" } $mc{$n}->keys } sort keys %mc;
# session copies t:<hex>, locks lock:t:<hex>, and the node failures mod_msm publishes
my @bad_keys = grep { !/^n[123]:(?:(?:lock:)?t:[0-9a-f]{32}|t:msm-failures)$/ } @keys;
is_deeply(\@bad_keys, [], 'every key in memcached is built from a well-formed id ('
          . scalar(@keys) . ' keys)');
ok(!grep({ /etc.passwd|injected|evil/i } @keys), 'no key holds any part of a bad value');
my %uniq = map { $_ => 1 } @new_ids;
is(scalar(keys %uniq), scalar(@new_ids), 'all issued ids differ (' . scalar(@new_ids) . ')');

my $log = MsmTest::log_since($mark);
unlike($log, qr/exit signal|Segmentation|AddressSanitizer|runtime error:/,
       'error_log: no crashed child');
my $n121 = () = $log =~ /MSM00121/g;
cmp_ok($n121, '>=', 2 * (@cases - 2),
       "error_log: malformed cookies logged at debug (MSM00121 x $n121)");
unlike($log, qr{etc/passwd|X-Injected|injected|evil=1|\xc3\xa9},
       'error_log: the bad values themselves are never logged');
# ids are credentials: log lines name a session by its tag (MSM00122 "not found" etc.)
my @ids = MsmTest::ids_in($log);
is_deeply(\@ids, [], 'error_log: no session id (32 hex digits) is logged, only tags')
    or diag(join "\n", grep { my $l = $_; grep { index($l, $_) >= 0 } @ids } split /\n/, $log);
my @dead = grep { !kill 0, $_ } sort keys %pids;
is_deeply(\@dead, [], 'every child that answered a malformed cookie is still alive ('
          . scalar(keys %pids) . ' children)');
