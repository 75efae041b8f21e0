# MsmBackupAsync (README "Backup copies"): with On (the default) the backup copy is
# written after the response has been sent, so the client never waits for the
# backup node; with Off it is written before the response, which then waits for
# the backup node (bounded by MsmOperationTimeout). Two extra httpds on the same
# two memcached nodes b1, b2 (a session on b1 has its backup on b2), one with
# MsmBackupAsync On, one with Off, MsmOperationTimeout 1000. The backup node b2
# is stopped (SIGSTOP):
#   - for longer than the timeout: Off answers after ~1 s (and within timeout +
#     slack), On answers at once;
#   - for 0.5 s, less than the timeout: Off answers after b2 resumed, with the
#     backup already on b2; On answers at once and the backup reaches b2 after
#     the response, once b2 resumes.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Time::HiRes qw(time sleep);

plan tests => 17, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my $TIMEOUT = 1.0;      # MsmOperationTimeout 1000
# A write that does not wait for b2 costs a CGI request and two memcached round
# trips on b1 (20-120 ms on this busy 2-core machine, 300 ms seen once); one that
# waits for b2 costs at least the time b2 is stopped (0.5 s) or the timeout (1 s).
# 400 ms is below both.
my $FAST = 0.4;
# the bound of a write that waits out the timeout: the timeout, the CGI and a
# busy machine's scheduling
my $SLACK = 0.5;

my %mc = (b1 => MsmTest::memcached(port => 21450), b2 => MsmTest::memcached(port => 21451));
my %h;
for my $mode (['on', 21452, 'On'], ['off', 21453, 'Off']) {
    my ($name, $port, $async) = @$mode;
    $h{$name} = MsmTest::httpd(port => $port, name => "t63-$name", conf => MsmTest::app_conf(
        'b1:127.0.0.1:21450 b2:127.0.0.1:21451', 'a63:', 'MsmOperationTimeout 1000', "MsmBackupAsync $async"));
}

# a session of $name's httpd with its primary on b1 (so its backup is on b2)
# and the backup written: (client, cookie)
sub session_b1 {
    my $name = shift;
    my ($c, $sid) = MsmTest::session_on($h{$name}->url, 'b1', "$name-0");
    MsmTest::wait_until(sub { (($mc{b2}->copy($sid, 'a63:') || {})->{primary} // '') eq 'b1' }, timeout => 5);
    return ($c, $sid);
}
sub backup_holds {
    my ($sid, $val) = @_;
    return (($mc{b2}->copy($sid, 'a63:') || {})->{payload} // '') =~ /(?:^|&)data=\Q$val\E(?:&|$)/;
}
# the clients of the measured writes keep their connection open, as browsers do
# (one that closes it is measured at the end)
sub ka_client {
    my ($name, $sid) = @_;
    my $c = MsmTest::client(base => $h{$name}->url, keep_alive => 1);
    $c->cookie(MSMSESSION => $sid);
    return $c;
}
# Each server reads the published node failures from one live node (another
# each second) once a second, before a read from memcached (README "Failures
# seen elsewhere"): a measured request that did that read on the stopped b2
# would wait for b2 whatever MsmBackupAsync says. So a read through each httpd
# just before the stop, more than a second after the previous one, does it:
# the measured request, within the next second, does not.
sub fresh_lists {
    sleep 1.05;
    for (@_) {       # a request with a session cookie (one without makes no memcached operation)
        my $c = MsmTest::client(base => $h{$_}->url);
        $c->cookie(MSMSESSION => MsmTest::random_hex() . '-b1');
        $c->get('/msm/app.cgi?op=read');
    }
}
sub both_live {
    my $name = shift;
    return MsmTest::wait_nodes_live([qw(b1 b2)], base => $h{$name}->url);
}

my %s;
for my $name (qw(on off)) {
    my ($c, $sid) = session_b1($name);
    ok(MsmTest::cookie_node($sid) eq 'b1' && backup_holds($sid, "$name-0"),
       "$name: a session on b1 with its backup on b2");
    $s{$name} = ka_client($name, $sid);
}

# ---------------------------------------------------------------- b2 hangs past the timeout
fresh_lists(qw(on off));
$mc{b2}->sigstop->wait_stopped;
my %r;
$r{$_} = $s{$_}->get("/msm/app.cgi?op=set&k=data&v=$_-1") for qw(on off);
diag(sprintf 'b2 stopped: write with MsmBackupAsync On %.0f ms, Off %.0f ms',
     $r{on}->elapsed * 1000, $r{off}->elapsed * 1000);
is($r{on}->status . ' ' . $r{off}->status, '200 200', 'b2 stopped: both writes answer 200');
cmp_ok($r{on}->elapsed, '<', $FAST, 'MsmBackupAsync On: the write answers at once (the backup is written after the response)');
cmp_ok($r{off}->elapsed, '>=', $TIMEOUT - 0.05, 'MsmBackupAsync Off: the write waited for the backup node');
cmp_ok($r{off}->elapsed, '<=', $TIMEOUT + $SLACK, 'MsmBackupAsync Off: ... bounded by MsmOperationTimeout (+ 500 ms)');
is_deeply([map { ($mc{b1}->copy($s{$_}->cookie('MSMSESSION'), 'a63:') || {})->{payload} } qw(on off)],
          ['data=on-1', 'data=off-1'], 'both primaries on b1 hold the write');
$mc{b2}->sigcont;
ok(both_live('on') && both_live('off'), 'b2 resumed: live again for both httpds');

# ---------------------------------------------------------------- b2 stopped for 0.5 s
# (less than the timeout): the backup write waits for it and then succeeds
for my $name (qw(off on)) {
    my (undef, $sid) = session_b1($name);
    my $c = ka_client($name, $sid);
    fresh_lists($name);
    $mc{b2}->sigstop->wait_stopped;
    my $cont = MsmTest::cont_after($mc{b2}, 0.5);
    my $r = $c->get("/msm/app.cgi?op=set&k=data&v=$name-2");
    # Off: b2 answers again by now; On: b2 may still be stopped (not read here:
    # a read would wait for it)
    my $at_response = $name eq 'off' ? eval { backup_holds($sid, "$name-2") } : undef;
    MsmTest::parallel_wait($cont, timeout => 10);
    my $later = MsmTest::wait_until(sub { backup_holds($sid, "$name-2") }, timeout => 5);
    diag(sprintf 'b2 stopped for 0.5 s, MsmBackupAsync %s: write %.0f ms (%s)', $name, $r->elapsed * 1000,
         join(', ', map { "$_: " . ($r->header($_) // '-') } qw(content-length transfer-encoding connection)));
    is($r->status, 200, "$name, b2 stopped 0.5 s: the write answers 200");
    if ($name eq 'off') {
        cmp_ok($r->elapsed, '>=', 0.45, 'Off: the response waited until b2 resumed (>= 0.5 s after the stop)');
        cmp_ok($r->elapsed, '<', $TIMEOUT + $SLACK, 'Off: ... and did not run into the timeout');
        ok($at_response, 'Off: the backup is on b2 when the response arrives');
    }
    else {
        # answered before b2 resumed (0.5 s): the backup cannot have been written
        # before the response
        cmp_ok($r->elapsed, '<', $FAST, 'On: the write answers at once, while b2 is still stopped');
        ok($later, 'On: the backup reaches b2 after the response, once b2 resumed');
    }
}
# ---------------------------------------------------------------- Connection: close
# A client that does not keep the connection: it waits for no more than the
# response either (httpd gives a small CGI body a Content-Length)
{
    my (undef, $sid) = session_b1('on');
    my $c = MsmTest::client(base => $h{on}->url);
    $c->cookie(MSMSESSION => $sid);
    fresh_lists('on');
    $mc{b2}->sigstop->wait_stopped;
    my $r = $c->get('/msm/app.cgi?op=set&k=data&v=on-3');
    $mc{b2}->sigcont;
    diag(sprintf 'MsmBackupAsync On, b2 stopped, Connection: close: write %.0f ms (%s)', $r->elapsed * 1000,
         join(', ', map { "$_: " . ($r->header($_) // '-') } qw(content-length transfer-encoding connection)));
    cmp_ok($r->elapsed, '<', $FAST, 'On, Connection: close: the write answers at once');
}
ok(!grep({ MsmTest::log_since([$h{$_}->error_log, 0]) =~ /exit signal|Segmentation/ } qw(on off)), 'no crashed child');
