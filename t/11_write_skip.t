# "A session is written only when it changed": memcached operations per request,
# measured as stats deltas summed over n1-n3 (stats itself counts as no operation).
#   no cookie          -> 0 operations of any kind, no Set-Cookie (also with SessionMaxAge)
#   read, unchanged    -> exactly 1 touch (gats) on the primary, 0 set
#   same values again  -> 0 set (the app re-sends identical entries: mod_session marks the
#                         session dirty, mod_msm compares the entries)
#   modify             -> gats + 1 cas on the primary; after the response the backup node:
#                         1 gets + 1 cas (a replica is written only over an older copy)
#   destroy            -> gats + a tombstone (1 set) on EVERY node before the response,
#                         no delete
# Not counted: mod_msm's published node failures ("t:msm-failures", read by one
# request per second; MsmTest::mc_ops counts them apart, column "fail").
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Time::HiRes qw(time sleep);

plan tests => 40, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my %port = (n1 => 21301, n2 => 21302, n3 => 21303);
my %mc = map { $_ => MsmTest::memcached(port => $port{$_}) } sort keys %port;
my %next = (n1 => 'n2', n2 => 'n3', n3 => 'n1');
my $COOKIE = qr/^([0-9a-f]{32})-(n[123])$/;

ok(MsmTest::wait_nodes_live([qw(n1 n2 n3)], timeout => 10), 'n1-n3 live for mod_msm');

# runs one request; returns (response, delta of memcached ops). $until: extra
# condition on the delta to wait for (asynchronous backup writes), bounded.
sub measure {
    my ($code, $until) = @_;
    my $s0 = MsmTest::mc_ops_settled(\%mc, quiet => 0.2);
    my $r = $code->();
    if ($until) {
        MsmTest::wait_until(sub { $until->(MsmTest::mc_ops_delta($s0, MsmTest::mc_ops(\%mc))) },
                            timeout => 5);
    }
    my $s1 = MsmTest::mc_ops_settled(\%mc, quiet => 0.4);
    return ($r, MsmTest::mc_ops_delta($s0, $s1));
}
sub n_cookies { my @c = $_[0]->set_cookies; scalar @c }

my @table;
sub row {
    my ($name, $d) = @_;
    push @table, sprintf('%-22s %5d %5d %5d %6d %5d   %s', $name,
                         @{ $d->{_sum} }{qw(get touch set delete failures)}, MsmTest::mc_ops_str($d));
}

# ---------------------------------------------------------------- no cookie
my $c = MsmTest::client();
my ($r, $d) = measure(sub { $c->get('/msm/app.cgi?op=read') });
is($r->status, 200, 'no cookie, read: 200');
is($d->{_sum}{total}, 0, 'no cookie, read: 0 memcached operations') or diag(MsmTest::mc_ops_str($d));
is(n_cookies($r), 0, 'no cookie, read: no Set-Cookie');
row('no cookie', $d);

($r, $d) = measure(sub { $c->get('/msm/app.cgi?op=set&k=a&v=') });
is($d->{_sum}{total}, 0, 'no cookie, app removes a key that is not there: 0 operations')
    or diag(MsmTest::mc_ops_str($d));
is(n_cookies($r), 0, '... and no Set-Cookie');

($r, $d) = measure(sub { $c->get('/msm-maxage/app.cgi?op=read') });
is($r->status, 200, 'no cookie, SessionMaxAge 60: 200');
is($d->{_sum}{total}, 0, 'no cookie, SessionMaxAge (expiry entry only): 0 operations')
    or diag(MsmTest::mc_ops_str($d));
is(n_cookies($r), 0, 'no cookie, SessionMaxAge: no Set-Cookie') or diag($r->dump);
row('no cookie (maxage)', $d);

($r, $d) = measure(sub { $c->get('/msm-maxage/app.cgi?op=set&k=a&v=') });
is($d->{_sum}{total} + n_cookies($r), 0,
   'no cookie, SessionMaxAge, app removes a missing key: 0 operations, no cookie');

# ---------------------------------------------------------------- create
($r, $d) = measure(sub { $c->get('/msm/app.cgi?op=set&k=a&v=1') },
                   sub { $_[0]{_sum}{set} >= 2 });
my $sid = $r->cookie('MSMSESSION') // '';
like($sid, $COOKIE, "create: cookie $sid");
my ($hex, $p) = $sid =~ $COOKIE;
$p //= 'n1';
my $b = $next{$p};
my ($o) = grep { $_ ne $p && $_ ne $b } sort keys %mc;
diag("primary $p, backup $b, other $o");
is($d->{$p}{set}, 1, 'create: 1 set (add) on the primary');
is($d->{$b}{set}, 1, 'create: 1 set on the backup node');
is($d->{_sum}{get} + $d->{_sum}{touch} + $d->{_sum}{delete}, 0, 'create: no read, no delete')
    or diag(MsmTest::mc_ops_str($d));
row('create', $d);

# ---------------------------------------------------------------- read, unchanged
($r, $d) = measure(sub { $c->get('/msm/app.cgi?op=read') });
is_deeply($r->session, { a => 1 }, 'read unmodified: content');
is($d->{_sum}{set}, 0, 'read unmodified: 0 cmd_set on all nodes');
is($d->{$p}{touch}, 1, 'read unmodified: exactly 1 touch (gats) on the primary');
is($d->{_sum}{total}, 1, 'read unmodified: no other operation anywhere')
    or diag(MsmTest::mc_ops_str($d));
is(n_cookies($r), 0, 'read unmodified: no Set-Cookie');
row('read unmodified', $d);

# five more reads: the cost stays one gats per request
($r, $d) = measure(sub { my $x; $x = $c->get('/msm/app.cgi?op=read') for 1 .. 5; $x });
is($d->{_sum}{set}, 0, '5 more reads: 0 cmd_set');
is($d->{$p}{touch}, 5, '5 more reads: 5 touches on the primary');
is($d->{_sum}{total}, 5, '5 more reads: nothing else') or diag(MsmTest::mc_ops_str($d));

# ---------------------------------------------------------------- same values again
($r, $d) = measure(sub { $c->get('/msm/app.cgi?op=set&k=a&v=1') });
is($r->status, 200, 'app re-sets a=1: 200');
is_deeply($r->session, { a => 1 }, 'app re-sets a=1: content');
is($d->{_sum}{set}, 0, 'app re-sets the same value: 0 cmd_set on all nodes')
    or diag(MsmTest::mc_ops_str($d));
is($d->{$p}{touch}, 1, 'app re-sets the same value: the 1 touch of the load');
is($d->{_sum}{total}, 1, 'app re-sets the same value: nothing else') or diag(MsmTest::mc_ops_str($d));
row('same values re-set', $d);

# ---------------------------------------------------------------- modify
($r, $d) = measure(sub { $c->get('/msm/app.cgi?op=set&k=a&v=2') },
                   sub { $_[0]{$b}{set} >= 1 });
my $bak = $mc{$b}->copy($sid) || {};
is_deeply($r->session, { a => 2 }, 'modify: content');
is($d->{$p}{set}, 1, 'modify: exactly 1 cmd_set on the primary');
is($d->{$b}{set}, 1, 'modify: exactly 1 cmd_set on the backup node');
is($d->{$o}{total}, 0, "modify: nothing on the third node $o");
is($d->{_sum}{set}, 2, 'modify: 2 cmd_set in all');
# the backup is written only over an older copy: it reads the one there first (gets)
is_deeply([$d->{$p}{get}, $d->{$b}{get}, $d->{_sum}{delete}], [0, 1, 0],
          'modify: no get on the primary, 1 gets on the backup node (before its cas), no delete')
    or diag(MsmTest::mc_ops_str($d));
is(n_cookies($r), 0, 'modify (same id): no Set-Cookie');
is($bak->{payload} // '', 'a=2', 'the backup holds the new value');
row('modify', $d);

# ---------------------------------------------------------------- destroy
# a tombstone (set) replaces the copy on every node, before the response; no delete
($r, $d) = measure(sub { $c->get('/msm/app.cgi?op=destroy') },
                   sub { $_[0]{_sum}{set} >= 3 });
is($r->status, 200, 'destroy: 200');
is($d->{$p}{set}, 1, 'destroy: 1 set (the tombstone) on the primary');
is($d->{$b}{set}, 1, 'destroy: 1 set (the tombstone) on the backup node');
is($d->{_sum}{delete}, 0, 'destroy: 0 deletes');
is_deeply([$d->{_sum}{set}, $d->{_sum}{total}], [3, 4],
          'destroy: one tombstone per node (3 sets, the third node too) + the gats of the load = 4')
    or diag(MsmTest::mc_ops_str($d));
row('destroy', $d);

diag("ops per request (memcached stats deltas summed over n1-n3):\n"
     . sprintf("%-22s %5s %5s %5s %6s %5s   %s\n", 'request', 'get', 'touch', 'set', 'delete', 'fail',
               'per node')
     . join("\n", @table));
