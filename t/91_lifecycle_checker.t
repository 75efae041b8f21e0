# Unit tests of the lifecycle CHECKER (t/lib/MsmLifecycle.pm) on hand-written
# histories: each anomaly class is found in a minimal history, and valid
# concurrent histories (indeterminate ops, lost_by_fault excuses, relocation
# with the same id, a login replacing the id, races with a destroy) pass.
# No server is needed. The recording side is exercised by t/90_lifecycle.t.
use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use MsmLifecycle;
use MsmLifecycleRun;

my $H1 = '1' x 32;
my $H2 = '2' x 32;
my $H3 = '3' x 32;

# op(kind, t0, t1, ...): an acked (200) op of app A unless told otherwise
my $seq = 0;
sub op {
    my ($kind, $t0, $t1, %o) = @_;
    my $r = { type => 'op', id => $o{id} // 'o' . ++$seq, kind => $kind, app => 'A', t0 => $t0,
              t1 => $t1, status => 200, sc => [], %o };
    delete $r->{in} if exists $o{in} && !defined $o{in};
    return $r;
}
sub ss { my ($sid, $n, $w, %x) = @_; return { sid => $sid, n => $n, w => $w, %x } }
sub set { return [ map { [$_, 0] } @_ ] }
sub clear { return [ ['', 1] ] }
sub fault { my ($kind, $target, $t0, $t1) = @_; return { type => 'fault', kind => $kind, target => $target, t0 => $t0, t1 => $t1 } }

# a created session S1 on H1-n1: create (0.00-0.01, w=c1), incr (0.10-0.11, w=i1)
sub base {
    return (op('create', 0.00, 0.01, id => 'c1', sid => 'S1', w => 'c1', in => {}, out => ss('S1', 0, 'c1'),
               dw => 1, sc => set("$H1-n1")),
            op('incr', 0.10, 0.11, id => 'i1', ck => "$H1-n1", w => 'i1', in => ss('S1', 0, 'c1'),
               out => ss('S1', 1, 'i1'), dw => 1));
}
sub read_op {
    my ($t0, $t1, $ck, $in, %o) = @_;
    return op($o{kind} // 'read', $t0, $t1, ck => $ck, in => $in, out => $in, dw => 0, %o);
}
sub incr_op {
    my ($id, $t0, $t1, $ck, $in_n, $in_w, %o) = @_;
    return op('incr', $t0, $t1, id => $id, ck => $ck, w => $id, in => ss('S1', $in_n, $in_w),
              out => ss('S1', $in_n + 1, $id), dw => 1, %o);
}

my @CASES = (
    # ---------------------------------------------------------- valid histories
    { name => 'plain lifecycle: create, incr, read, destroy, replay of the dead cookie sees nothing',
      h => [ base(), read_op(0.2, 0.21, "$H1-n1", ss('S1', 1, 'i1')),
             op('destroy', 0.3, 0.31, ck => "$H1-n1", in => ss('S1', 1, 'i1'), out => {}, dw => 1, sc => clear()),
             read_op(0.4, 0.41, "$H1-n1", {}, kind => 'replay') ],
      expect => {}, stats => { destroys => 1, acked_writes => 2 } },
    { name => 'concurrent writes: a later read may see either',
      h => [ base(), incr_op('a', 0.2, 0.3, "$H1-n1", 1, 'i1'), incr_op('b', 0.21, 0.29, "$H1-n1", 1, 'i1'),
             read_op(0.4, 0.41, "$H1-n1", ss('S1', 2, 'a')), read_op(0.5, 0.51, "$H1-n1", ss('S1', 2, 'b')) ],
      expect => {} },
    { name => 'a read concurrent with a write sees the old or the new value',
      h => [ base(), incr_op('a', 0.2, 0.3, "$H1-n1", 1, 'i1'),
             read_op(0.25, 0.26, "$H1-n1", ss('S1', 1, 'i1')), read_op(0.27, 0.28, "$H1-n1", ss('S1', 2, 'a')),
             read_op(0.29, 0.35, "$H1-n1", ss('S1', 1, 'i1')) ],
      expect => {} },
    { name => 'indeterminate write (599): it may show up at any time later, and is never an overwrite',
      h => [ base(), op('incr', 0.2, 15.2, id => 'x', ck => "$H1-n1", w => 'x', status => 599, err => 'timeout'),
             read_op(0.5, 0.51, "$H1-n1", ss('S1', 1, 'i1')), read_op(0.6, 0.61, "$H1-n1", ss('S1', 2, 'x')),
             read_op(0.7, 0.71, "$H1-n1", ss('S1', 1, 'i1')) ],
      expect => {} },
    { name => 'indeterminate 503 and 500 answers are no writes; a read after sees the acked state',
      h => [ base(), op('incr', 0.2, 0.25, id => 'y', ck => "$H1-n1", w => 'y', status => 503),
             read_op(0.5, 0.51, "$H1-n1", ss('S1', 1, 'i1')) ],
      expect => {}, stats => { status_503 => 1 } },
    { name => 'lost_by_fault: an acked write lost by a kill of its primary within the window',
      h => [ base(), incr_op('a', 0.2, 0.21, "$H1-n1", 1, 'i1'), fault('mc_kill9', 'n1', 1.15, 1.5),
             read_op(2.0, 2.01, "$H1-n1", ss('S1', 1, 'i1'), sc => set("$H1-n2")),
             read_op(2.1, 2.11, "$H1-n2", ss('S1', 1, 'i1')) ],
      params => { loss_window => 1.0 },
      expect => {}, stats => { lost_by_fault => 1, relocations => 1 } },
    { name => 'lost_by_fault is lazy: an excusable write that later reads see is not counted',
      h => [ base(), incr_op('a', 0.2, 0.21, "$H1-n1", 1, 'i1'), fault('mc_kill9', 'n1', 0.5, 1.0),
             read_op(2.0, 2.01, "$H1-n1", ss('S1', 2, 'a'), sc => set("$H1-n2")) ],
      params => { loss_window => 1.0 }, expect => {}, stats => { lost_by_fault => 0 } },
    { name => 'lost_by_fault: SIGSTOP of the primary excuses too; every lost write reads back as the state before',
      h => [ base(), incr_op('a', 0.2, 0.21, "$H1-n1", 1, 'i1'), incr_op('b', 0.3, 0.31, "$H1-n1", 2, 'a'),
             fault('mc_stop', 'n1', 1.15, 2.15), read_op(2.2, 2.21, "$H1-n1", ss('S1', 1, 'i1')) ],
      expect => {}, stats => { lost_by_fault => 2 } },
    { name => 'lost_by_fault: the node after the write is its Set-Cookie node (relocated write)',
      h => [ base(), incr_op('a', 0.2, 0.21, "$H1-n1", 1, 'i1', sc => set("$H1-n3")),
             fault('mc_kill9', 'n3', 0.5, 1.0), read_op(2.0, 2.01, "$H1-n3", ss('S1', 1, 'i1')) ],
      expect => {}, stats => { lost_by_fault => 1 } },
    { name => 'a login lost by a fault of its new node may leave the new hex empty',
      h => [ base(),
             op('login', 0.2, 0.21, id => 'l', ck => "$H1-n1", w => 'l', user => 'u', in => ss('S1', 1, 'i1'),
                out => ss('S1', 1, 'l', user => 'u'), dw => 1, sc => set("$H2-n3")),
             fault('mc_kill9', 'n3', 0.5, 1.0), read_op(1.5, 1.51, "$H2-n3", {}) ],
      expect => {}, stats => { lost_by_fault => 1 } },
    { name => 'relocation keeps the hex: the new and the old cookie value both read the current content',
      h => [ base(), incr_op('a', 0.2, 0.21, "$H1-n1", 1, 'i1', sc => set("$H1-n2")),
             read_op(0.3, 0.31, "$H1-n2", ss('S1', 2, 'a')),
             read_op(0.4, 0.41, "$H1-n1", ss('S1', 2, 'a'), kind => 'replay') ],
      expect => {}, stats => { relocations => 1 } },
    { name => 'a login replaces the hex: the new hex has the session, the old one nothing',
      h => [ base(),
             op('login', 0.2, 0.21, id => 'l', ck => "$H1-n1", w => 'l', user => 'u', in => ss('S1', 1, 'i1'),
                out => ss('S1', 1, 'l', user => 'u'), dw => 1, sc => set("$H2-n3")),
             read_op(0.15, 0.25, "$H1-n1", ss('S1', 1, 'i1')),      # started before the login's answer
             read_op(0.3, 0.31, "$H2-n3", ss('S1', 1, 'l', user => 'u')),
             read_op(0.4, 0.41, "$H1-n1", {}, kind => 'replay') ],
      expect => {}, stats => { logins => 1 } },
    { name => 'a read racing with a destroy (in flight) or after an indeterminate destroy may see nothing',
      h => [ base(), op('destroy', 0.2, 0.3, ck => "$H1-n1", in => ss('S1', 1, 'i1'), out => {}, dw => 1, sc => clear()),
             read_op(0.21, 0.22, "$H1-n1", {}, burst => 'b1'),
             op('incr', 0.5, 0.51, ck => "$H3-n1", w => 'z', in => {}, out => {}, dw => 0) ],
      expect => {} },
    { name => 'after an indeterminate destroy a read may see nothing (or the session)',
      h => [ base(), op('destroy', 0.2, 10.2, ck => "$H1-n1", status => 599),
             read_op(0.5, 0.51, "$H1-n1", ss('S1', 1, 'i1')), read_op(0.6, 0.61, "$H1-n1", {}) ],
      expect => {} },
    { name => 'locking: serialized increments have distinct results',
      h => [ base(), incr_op('a', 0.2, 0.21, "$H1-n1", 1, 'i1'), incr_op('b', 0.2, 0.25, "$H1-n1", 2, 'a') ],
      params => { locking => 1 }, expect => {} },
    { name => 'create with a dead cookie may set a new one; destroy clears its own',
      h => [ base(), op('destroy', 0.2, 0.21, ck => "$H1-n1", in => ss('S1', 1, 'i1'), out => {}, dw => 1, sc => clear()),
             op('create', 0.3, 0.31, sid => 'S2', w => 'c2', ck => "$H1-n1", in => {}, out => ss('S2', 0, 'c2'),
                dw => 1, sc => set("$H2-n2")),
             read_op(0.4, 0.41, "$H2-n2", ss('S2', 0, 'c2')) ],
      expect => {} },
    { name => 'app B sees nothing with a cookie of app A and sets no cookie',
      h => [ base(), read_op(0.2, 0.21, "$H1-n1", {}, kind => 'cross', app => 'B') ],
      expect => {} },

    # ---------------------------------------------------------- anomalies
    { name => 'resurrection: a read starting after the destroy was acked sees the session',
      h => [ base(), op('destroy', 0.2, 0.21, ck => "$H1-n1", in => ss('S1', 1, 'i1'), out => {}, dw => 1, sc => clear()),
             read_op(0.3, 0.31, "$H1-n1", ss('S1', 1, 'i1'), kind => 'replay') ],
      expect => { resurrection => 1 } },
    { name => 'resurrection: the hex a login replaced shows the session again',
      h => [ base(),
             op('login', 0.2, 0.21, ck => "$H1-n1", w => 'l', in => ss('S1', 1, 'i1'),
                out => ss('S1', 1, 'l', user => 'u'), dw => 1, sc => set("$H2-n1")),
             read_op(0.3, 0.31, "$H1-n1", ss('S1', 1, 'i1'), kind => 'replay') ],
      expect => { resurrection => 1 } },
    { name => 'stale_read: a read sees a value overwritten before it began',
      h => [ base(), incr_op('a', 0.2, 0.21, "$H1-n1", 1, 'i1'), read_op(0.3, 0.31, "$H1-n1", ss('S1', 1, 'i1')) ],
      expect => { stale_read => 1 } },
    { name => 'stale_read: a value never written to the sid',
      h => [ base(), read_op(0.3, 0.31, "$H1-n1", ss('S1', 7, 'bogus')) ],
      expect => { stale_read => 1 } },
    { name => 'stale_read: a value written by an op that started after the read ended',
      h => [ base(), read_op(0.3, 0.31, "$H1-n1", ss('S1', 2, 'late')), incr_op('late', 0.4, 0.41, "$H1-n1", 1, 'i1') ],
      expect => { stale_read => 1 } },
    { name => 'stale_read: the pre-relocation cookie reads the old copy',
      h => [ base(), incr_op('a', 0.2, 0.21, "$H1-n1", 1, 'i1', sc => set("$H1-n2")),
             incr_op('b', 0.3, 0.31, "$H1-n2", 2, 'a'),
             read_op(0.4, 0.41, "$H1-n1", ss('S1', 1, 'i1'), kind => 'replay') ],
      expect => { stale_read => 1 } },
    { name => 'stale_read: a fault after the window excuses nothing',
      h => [ base(), incr_op('a', 0.2, 0.21, "$H1-n1", 1, 'i1'), fault('mc_kill9', 'n1', 1.5, 2.0),
             read_op(3.0, 3.01, "$H1-n1", ss('S1', 1, 'i1')) ],
      params => { loss_window => 1.0 }, expect => { stale_read => 1 }, stats => { lost_by_fault => 0 } },
    { name => 'lost_session: excused when the primary failed and another node was killed after the write (both copies)',
      h => [ base(), fault('mc_kill9', 'n2', 0.5, 1.5), fault('mc_kill9', 'n1', 2.0, 3.0),
             read_op(2.1, 2.11, "$H1-n1", {}) ],
      expect => {}, stats => { lost_by_fault => 2, lost_by_double_fault => 2 } },
    { name => 'lost_session: excused when another node was cut off after the write, then the primary killed (the copy left predates its node\'s failure)',
      h => [ base(), fault('mc_stop', 'n2', 0.5, 1.5), fault('mc_kill9', 'n1', 2.0, 3.0),
             read_op(2.1, 2.11, "$H1-n1", {}) ],
      expect => {}, stats => { lost_by_fault => 2, lost_by_double_fault => 2 } },
    { name => 'lost_session: excused when both faults came while a slow read was on its way (it took effect after them)',
      h => [ base(), fault('mc_kill9', 'n2', 0.5, 1.5), fault('mc_kill9', 'n1', 2.0, 3.0),
             read_op(0.4, 2.5, "$H1-n1", {}) ],
      expect => {}, stats => { lost_by_fault => 2, lost_by_double_fault => 2 } },
    { name => 'lost_session: faults after the read ended excuse nothing',
      h => [ base(), read_op(0.4, 0.45, "$H1-n1", {}), fault('mc_kill9', 'n2', 0.5, 1.5),
             fault('mc_kill9', 'n1', 2.0, 3.0) ],
      expect => { lost_session => 1 } },
    { name => 'lost_session: a node cut off before the last write is no second fault',
      h => [ base(), fault('mc_stop', 'n2', 0.05, 0.08), fault('mc_kill9', 'n1', 2.0, 3.0),
             read_op(2.1, 2.11, "$H1-n1", {}) ],
      expect => { lost_session => 1 } },
    { name => 'lost_session: one fault after the window is not two',
      h => [ base(), fault('mc_kill9', 'n1', 2.0, 3.0), read_op(2.1, 2.11, "$H1-n1", {}) ],
      expect => { lost_session => 1 } },
    { name => 'stale_read: a fault of another node excuses nothing',
      h => [ base(), incr_op('a', 0.2, 0.21, "$H1-n1", 1, 'i1'), fault('mc_kill9', 'n2', 0.3, 0.6),
             read_op(3.0, 3.01, "$H1-n1", ss('S1', 1, 'i1')) ],
      expect => { stale_read => 1 }, stats => { lost_by_fault => 0 } },
    { name => 'stale_read: with MsmBackupAsync Off the window is 0',
      h => [ base(), incr_op('a', 0.2, 0.21, "$H1-n1", 1, 'i1'), fault('mc_kill9', 'n1', 0.5, 1.0),
             read_op(3.0, 3.01, "$H1-n1", ss('S1', 1, 'i1')) ],
      params => { backup_async => 0 }, expect => { stale_read => 1 }, stats => { lost_by_fault => 0 } },
    { name => 'MsmBackupAsync Off: a fault during the write still excuses it',
      h => [ base(), incr_op('a', 0.2, 0.5, "$H1-n1", 1, 'i1'), fault('mc_kill9', 'n1', 0.4, 1.0),
             read_op(3.0, 3.01, "$H1-n1", ss('S1', 1, 'i1')) ],
      params => { backup_async => 0 }, expect => {}, stats => { lost_by_fault => 1 } },
    { name => 'lost_session: a live hex shows nothing after acked writes',
      h => [ base(), read_op(0.3, 0.31, "$H1-n1", {}) ],
      expect => { lost_session => 1 } },
    { name => 'lost_session: the pre-relocation cookie finds nothing',
      h => [ base(), incr_op('a', 0.2, 0.21, "$H1-n1", 1, 'i1', sc => set("$H1-n2")),
             read_op(0.4, 0.41, "$H1-n1", {}, kind => 'replay') ],
      expect => { lost_session => 1 } },
    { name => 'lost_session: an acked destroy that wrote nothing ended nothing',
      h => [ base(), op('destroy', 0.2, 0.21, ck => "$H1-n1", in => {}, out => {}, dw => 0),
             read_op(0.3, 0.31, "$H1-n1", {}) ],
      expect => { lost_session => 2 } },
    { name => 'foreign: the hex of S1 shows S2',
      h => [ base(),
             op('create', 0.0, 0.02, sid => 'S2', w => 'c2', in => {}, out => ss('S2', 0, 'c2'), dw => 1, sc => set("$H2-n2")),
             read_op(0.3, 0.31, "$H1-n1", ss('S2', 0, 'c2')) ],
      expect => { foreign => 1 } },
    { name => 'cross_vhost: app B shows the session of a cookie of app A',
      h => [ base(), read_op(0.2, 0.21, "$H1-n1", ss('S1', 1, 'i1'), kind => 'cross', app => 'B') ],
      expect => { cross_vhost => 1 } },
    { name => 'lost_increment: two acked increments with the same result',
      h => [ base(), incr_op('a', 0.2, 0.3, "$H1-n1", 1, 'i1'), incr_op('b', 0.2, 0.31, "$H1-n1", 1, 'i1') ],
      params => { locking => 1 }, expect => { lost_increment => 1 } },
    { name => 'lost_increment: not checked without locking',
      h => [ base(), incr_op('a', 0.2, 0.3, "$H1-n1", 1, 'i1'), incr_op('b', 0.2, 0.31, "$H1-n1", 1, 'i1') ],
      params => { locking => 0 }, expect => {} },
    { name => 'lost_increment: a lost_by_fault increment does not count',
      h => [ base(), incr_op('a', 0.2, 0.21, "$H1-n1", 1, 'i1'), fault('mc_kill9', 'n1', 1.15, 1.5),
             incr_op('b', 2.0, 2.01, "$H1-n1", 1, 'i1') ],
      params => { locking => 1 }, expect => {}, stats => { lost_by_fault => 1 } },
    { name => 'lost_increment: excused when the lock node of one of them failed while it ran',
      h => [ base(), incr_op('a', 0.2, 0.3, "$H1-n1", 1, 'i1', sc => set("$H1-n2")),
             fault('mc_kill9', 'n1', 0.25, 0.5),
             incr_op('b', 0.26, 0.31, "$H1-n1", 1, 'i1', sc => set("$H1-n2")) ],
      params => { locking => 1 }, expect => {}, stats => { lock_lost_by_fault => 1 } },
    { name => 'lost_increment: a fault of another node excuses nothing',
      h => [ base(), incr_op('a', 0.2, 0.3, "$H1-n1", 1, 'i1'), fault('mc_kill9', 'n3', 0.25, 0.5),
             incr_op('b', 0.26, 0.31, "$H1-n1", 1, 'i1') ],
      params => { locking => 1 }, expect => { lost_increment => 1 } },
    { name => 'lost_increment: the result is not what it read + 1',
      h => [ base(), op('incr', 0.2, 0.21, ck => "$H1-n1", w => 'a', in => ss('S1', 1, 'i1'), out => ss('S1', 5, 'a'), dw => 1) ],
      params => { locking => 1 }, expect => { lost_increment => 1 } },
    { name => 'cookie_clobber: a read answer clears the cookie',
      h => [ base(), read_op(0.2, 0.21, "$H1-n1", ss('S1', 1, 'i1'), sc => clear()) ],
      expect => { cookie_clobber => 1 } },
    { name => 'cookie_clobber: app B clears the cookie of app A',
      h => [ base(), read_op(0.2, 0.21, "$H1-n1", {}, kind => 'cross', app => 'B', sc => clear()) ],
      expect => { cookie_clobber => 1 } },
    { name => 'cookie_clobber: an answer to a dead hex sets a cookie',
      h => [ base(), op('destroy', 0.2, 0.21, ck => "$H1-n1", in => ss('S1', 1, 'i1'), out => {}, dw => 1, sc => clear()),
             read_op(0.3, 0.31, "$H1-n1", {}, kind => 'replay', sc => set("$H1-n2")) ],
      expect => { cookie_clobber => 1 } },
    { name => 'cookie_clobber: a 5xx answer that clears counts too',
      h => [ base(), op('incr', 0.2, 0.21, ck => "$H1-n1", w => 'q', status => 500, sc => clear()) ],
      expect => { cookie_clobber => 1 } },
);

my @CLASSES = MsmLifecycle::classes();
my $n_stats = 0;
$n_stats += keys %{ $_->{stats} || {} } for @CASES;
plan tests => @CASES * @CLASSES + $n_stats + 14;

for my $c (@CASES) {
    my $res = MsmLifecycle::analyze($c->{h}, %{ $c->{params} || {} });
    for my $class (@CLASSES) {
        my $want = $c->{expect}{$class} // 0;
        is(MsmLifecycle::anomaly_count($res, $class), $want, "$c->{name}: $class = $want")
            or diag(MsmLifecycle::report($res, excerpts => 5));
    }
    for my $k (sort keys %{ $c->{stats} || {} }) {
        is($res->{stats}{$k} // 0, $c->{stats}{$k}, "$c->{name}: stats $k = $c->{stats}{$k}");
    }
}

# ---- the report: an excerpt names the offending op, the related ops and the faults
{
    my @h = (base(), incr_op('a', 0.2, 0.21, "$H1-n1", 1, 'i1'), fault('mc_kill9', 'n2', 0.25, 0.5),
             read_op(0.3, 0.31, "$H1-n1", ss('S1', 1, 'i1'), id => 'bad'));
    unshift @h, { type => 'meta', start => 0 };
    my $res = MsmLifecycle::analyze(\@h);
    my $txt = MsmLifecycle::report($res, excerpts => 2, title => 'unit');
    like($txt, qr/^== unit/m, 'report: title');
    like($txt, qr/anomalies: .*stale_read=1/, 'report: counts by class');
    like($txt, qr/>>.*\bbad\b.*read/, 'report: the offending op is marked');
    like($txt, qr/\bi1\b.*incr/, 'report: the write whose value was read is in the excerpt');
    like($txt, qr/FAULT mc_kill9 n2/, 'report: the faults of the window are in the excerpt');
    like($txt, qr/\+?0\.300/, 'report: relative times');
}

# ---- the cause of a resurrection: a copy that survived the destroy, or a racing write
{
    my @h = (base(), op('destroy', 0.2, 0.3, ck => "$H1-n1", in => ss('S1', 1, 'i1'), out => {}, dw => 1, sc => clear()),
             incr_op('r', 0.25, 0.35, "$H1-n1", 1, 'i1', burst => 'b'),
             read_op(0.5, 0.51, "$H1-n1", ss('S1', 2, 'r'), kind => 'replay'),
             read_op(0.6, 0.61, "$H1-n1", ss('S1', 1, 'i1'), kind => 'replay'));
    my $res = MsmLifecycle::analyze(\@h);
    is_deeply([ map { $_->{cause} } @{ $res->{anomalies}{resurrection} } ], [qw(racing_write surviving_copy)],
              'resurrection cause: racing_write, surviving_copy');
    like(MsmLifecycle::report($res), qr/by cause: racing_write=1 surviving_copy=1/, 'report: resurrections by cause');
}

# ---- history files round trip
{
    my $dir = tempdir(CLEANUP => 1);
    my @h = (base(), fault('mc_stop', 'n1', 1, 2));
    MsmLifecycle::write_history("$dir/h.jsonl", \@h);
    my $back = MsmLifecycle::read_history("$dir/h.jsonl");
    is(scalar @$back, 3, 'history: written and read back');
    is_deeply([ map { $_->{kind} } @$back ], [qw(create incr mc_stop)], 'history: records kept in order');
}

# ---- the recorder's Set-Cookie parser (what "cleared" means)
is_deeply(MsmLifecycleRun::parse_set_cookie("MSMSESSION=$H1-n1;path=/;HttpOnly"), ["$H1-n1", 0],
          'Set-Cookie: a value');
is_deeply(MsmLifecycleRun::parse_set_cookie('MSMSESSION=;Max-Age=0;Expires=Thu, 01-Jan-1970 00:00:00 GMT;path=/'),
          ['', 1], 'Set-Cookie: Max-Age=0 clears');
is_deeply(MsmLifecycleRun::parse_set_cookie('MSMSESSION=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT'), ['x', 1],
          'Set-Cookie: Expires in the past clears');
is_deeply([ MsmLifecycleRun::parse_set_cookie('OTHER=1; path=/') ], [], 'Set-Cookie: another cookie is ignored');
