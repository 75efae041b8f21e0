# The idle-time/2 rewrite (README "Backup copies"): a backup is written with twice
# MsmIdleTimeout and reads refresh only the primary (gats); once half of
# MsmIdleTimeout has passed since the copy was written, a read rewrites primary
# (cas) and backup after the response, so the backup never expires before its
# primary. An extra httpd with MsmIdleTimeout 4 on memcached i1, i2 (a session on
# i1, its backup on i2); memcached's own counters (cmd_set per node, settled) and
# TTLs (meta get "mg <key> t"):
#   - after the write: primary TTL ~4 s, backup ~8 s;
#   - a read soon after (< 2 s): no write;
#   - a read 2.5 s after the write (> 2 s): one write on each node, both TTLs
#     refreshed (the backup's back to ~8 s), the content unchanged; a read right
#     after does not write again;
#   - reads every 1.5 s until past the first backup's expiry (8 s after the
#     write), then i1 is killed: the session is read from its backup.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Time::HiRes qw(time sleep);

plan tests => 17, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my $IDLE = 4;
my %mc = (i1 => MsmTest::memcached(port => 21455), i2 => MsmTest::memcached(port => 21456));
my $h = MsmTest::httpd(port => 21457, name => 't67', conf => MsmTest::app_conf(
    'i1:127.0.0.1:21455 i2:127.0.0.1:21456', 'i64:', "MsmIdleTimeout $IDLE"));

my ($c, $sid) = MsmTest::session_on($h->url, 'i1', 'idle');
my $t_write = time;
my $key = MsmTest::session_key($sid, 'i64:');
ok(MsmTest::cookie_node($sid) eq 'i1'
   && MsmTest::wait_until(sub { (($mc{i2}->copy($sid, 'i64:') || {})->{primary} // '') eq 'i1' }, timeout => 3),
   'a session on i1 with its backup on i2');
sub ttls { return map { $mc{$_}->ttl($key) // -99 } qw(i1 i2) }
sub sets { my $s = MsmTest::mc_ops_settled(\%mc, quiet => 0.3); return { map { $_ => $s->{$_}{set} } qw(i1 i2) } }
sub written { return (($mc{$_[0]}->copy($sid, 'i64:') || {})->{written}) // 0 }

# memcached's TTLs count down in whole seconds from its clock (updated once a
# second): a fresh item's TTL reads exptime or exptime - 1
my ($p0, $b0) = ttls();
diag("after the write: primary TTL $p0 s, backup TTL $b0 s");
ok($p0 >= $IDLE - 1 && $p0 <= $IDLE, "after the write: primary TTL $p0 ~ MsmIdleTimeout ($IDLE)");
ok($b0 >= 2 * $IDLE - 1 && $b0 <= 2 * $IDLE, "after the write: backup TTL $b0 ~ 2 x MsmIdleTimeout");
my $w0 = written('i1');

# ---------------------------------------------------------------- a read before idle/2
my $s0 = sets();
my $t_read = time - $t_write;
my $r = $c->get('/msm/app.cgi?op=read');
my $d = MsmTest::delta($s0, sets());
diag(sprintf 'read %.1f s after the write: cmd_set i1 +%d, i2 +%d', $t_read, $d->{i1}, $d->{i2});
is_deeply($r->session, { data => 'idle' }, 'a read soon after the write: the session');
is_deeply([$d->{i1}, $d->{i2}, $t_read < $IDLE / 2 ? 'early' : sprintf('late (%.1f s)', $t_read)], [0, 0, 'early'],
          'a read before MsmIdleTimeout/2: nothing written on either node');
is(written('i1'), $w0, '... the copy is the same write (its written time did not move)');

# ---------------------------------------------------------------- a read after idle/2
# the primary expires MsmIdleTimeout after the last read: this read must come
# well before (the counters are taken first, the TTLs take two quick mg)
$s0 = sets();
my $wait = $t_write + $IDLE / 2 + 0.5 - time;
sleep $wait if $wait > 0;
my ($p1, $b1) = ttls();       # the backup has aged by > 2 s since the write
$t_read = time - $t_write;
$r = $c->get('/msm/app.cgi?op=read');
MsmTest::wait_until(sub { MsmTest::delta($s0, sets())->{i2} >= 1 }, timeout => 3);
$d = MsmTest::delta($s0, sets());
my ($p2, $b2) = ttls();
diag(sprintf 'read %.1f s after the write: cmd_set i1 +%d, i2 +%d; TTLs before primary %d backup %d, after primary %d backup %d',
     $t_read, $d->{i1}, $d->{i2}, $p1, $b1, $p2, $b2);
is_deeply($r->session, { data => 'idle' }, sprintf('a read %.1f s after the write (> MsmIdleTimeout/2): the session', $t_read));
is($d->{i1}, 1, 'a read after MsmIdleTimeout/2: the primary on i1 is written again (one cas)');
is($d->{i2}, 1, '... and the backup on i2 (one write)');
cmp_ok(written('i1'), '>', $w0, '... as a new write (its written time moved)');
ok($b1 <= 2 * $IDLE - 2 && $b2 >= 2 * $IDLE - 1,
   "the backup's TTL is refreshed: $b1 s before the rewrite, $b2 s after (2 x MsmIdleTimeout)");
ok($p2 >= $IDLE - 1, "the primary's TTL is $p2 s (MsmIdleTimeout)");
is_deeply([map { (($mc{$_}->copy($sid, 'i64:') || {})->{payload}) } qw(i1 i2)], ['data=idle', 'data=idle'],
          'both copies hold the unchanged session');
$s0 = sets();
$c->get('/msm/app.cgi?op=read');
$d = MsmTest::delta($s0, sets());
is_deeply([$d->{i1}, $d->{i2}], [0, 0], 'a read right after the rewrite writes nothing');

# ---------------------------------------------------------------- past the first backup's expiry
# reads every 1.5 s keep the session alive: each read after idle/2 rewrites both
# copies; at 9 s the backup written first (8 s) would have expired
my $n = 0;
while (time < $t_write + 2 * $IDLE + 1 && $n++ < 10) {
    sleep 1.5;
    $c->get('/msm/app.cgi?op=read');
}
my ($p3, $b3) = ttls();
diag(sprintf '%.1f s after the write: primary TTL %d s, backup TTL %d s', time - $t_write, $p3, $b3);
cmp_ok($b3, '>=', $p3, "past the first backup's expiry: the backup (TTL $b3 s) outlives the primary ($p3 s)");
$mc{i1}->kill9;
$r = $c->get('/msm/app.cgi?op=read');
is_deeply($r->session, { data => 'idle' }, 'i1 killed: the session is read from its backup on i2');
like($c->cookie('MSMSESSION') // '', qr/^\Q${\ MsmTest::cookie_hex($sid)}\E-i2$/, '... and moved to i2 (same hex)');
