# Randomized, history-recording lifecycle checker (in the spirit of Jepsen).
#
# For each mode (nonsticky: prefork, 3 memcached, no locking; locking: event
# MPM, MsmLocking On; sticky: two back ends, prefork and event, behind a
# mod_proxy_balancer front), real httpds with mod_msm serve the Lua app
# t/htdocs/lc/app.lua; client processes (browsers with a cookie jar each) run
# create / read / incr / parallel bursts / login / destroy / replays of old
# cookies / requests to another vhost, and record every operation with its
# CLOCK_MONOTONIC start and end; a nemesis kills (-9) and restarts memcached
# nodes, stops them (SIGSTOP 1 s), gracefully restarts httpds and, in sticky
# mode, kills back ends. The merged history (t/logs/lifecycle/<mode>.jsonl) is
# checked afterwards by t/lib/MsmLifecycle.pm against the guarantees G1-G5
# (no resurrection, no stale read / lost session, no foreign or cross-vhost
# content, serialized increments under locking, no cookie clobbering).
# Recording: t/lib/MsmLifecycleRun.pm. The checker's own tests: t/91.
#
# Parameters (environment):
#   MSM_LIFECYCLE_SECONDS      load per mode (default 30: about 2 minutes for all)
#   MSM_LIFECYCLE_MODES        comma list (default nonsticky,locking,sticky)
#   MSM_LIFECYCLE_CLIENTS      client processes (default 8), 3 browsers each
#                              (MSM_LIFECYCLE_BROWSERS)
#   MSM_LIFECYCLE_SEED         seed of the workload and the nemesis (default: the time)
#   MSM_LIFECYCLE_LOSS_WINDOW  seconds after an acked write in which a fault of
#                              its primary node excuses its loss (default 1.0)
#   MSM_LIFECYCLE_EXCERPTS     history excerpts printed per anomaly class (default 3)
#   MSM_LIFECYCLE_FAULTS=0     no nemesis (what the workload alone finds)
#   MSM_LIFECYCLE_VERBOSE=1    print each fault as it happens
# A 10-minute run (200 s per mode; scripts/test.sh raises its per-file timeout):
#   MSM_LIFECYCLE_SECONDS=200 bash scripts/test.sh --only t/90_lifecycle.t
# Reports go to the TAP diagnostics and t/logs/lifecycle/<mode>.report.txt.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use MsmLifecycle;
use MsmLifecycleRun;
use Time::HiRes qw(time);

my @modes = grep { length } split /\s*,\s*/, ($ENV{MSM_LIFECYCLE_MODES} || 'nonsticky,locking,sticky');
my %known = map { $_ => 1 } keys %MsmLifecycleRun::PORTS;
my @bad = grep { !$known{$_} } @modes;
die "MSM_LIFECYCLE_MODES: unknown mode(s) @bad (nonsticky, locking, sticky)\n" if @bad;
my $seconds  = $ENV{MSM_LIFECYCLE_SECONDS}  || 30;
my $clients  = $ENV{MSM_LIFECYCLE_CLIENTS}  || 8;
my $browsers = $ENV{MSM_LIFECYCLE_BROWSERS} || 3;
my $seed     = $ENV{MSM_LIFECYCLE_SEED}     || (time() ^ $$) % 1000000;
my $window   = $ENV{MSM_LIFECYCLE_LOSS_WINDOW} // 1.0;
my $excerpts = $ENV{MSM_LIFECYCLE_EXCERPTS} // 3;
my $nemesis  = $ENV{MSM_LIFECYCLE_FAULTS} // 1;

# floors: generous (the CPU is shared with other test runs)
my $OPS_PER_S   = 40;
my $FAULT_EVERY = 4.5;

my %classes = (
    nonsticky => [qw(resurrection stale_read lost_session foreign cross_vhost cookie_clobber)],
    locking   => [qw(resurrection stale_read lost_session foreign cross_vhost lost_increment cookie_clobber)],
    sticky    => [qw(resurrection stale_read lost_session foreign cross_vhost cookie_clobber)],
);
my $ntests = 0;
$ntests += 3 + @{ $classes{$_} } for @modes;

plan tests => $ntests,
    need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm(),
           "mod_lua ($MsmLifecycleRun::LUA_SO) is not installed" => -e $MsmLifecycleRun::LUA_SO };

diag("lifecycle: modes @modes, $seconds s each, $clients clients x $browsers browsers, "
     . "seed $seed, loss window $window s" . ($nemesis ? '' : ', NO faults'));

for my $mode (@modes) {
    my $t0 = time;
    my $run = eval {
        MsmLifecycleRun::run_mode($mode, seconds => $seconds, clients => $clients, browsers => $browsers,
                                  seed => $seed, loss_window => $window, faults => $nemesis,
                                  verbose => $ENV{MSM_LIFECYCLE_VERBOSE}, log => sub { diag(@_) });
    };
    if (!ok($run, "$mode: the run completed")) {
        diag("$mode: $@");
        fail("$mode: ops") for 1 .. 2 + @{ $classes{$mode} };
        next;
    }
    my $t1 = time;
    my $res = MsmLifecycle::analyze($run->{records}, %{ $run->{params} });
    my $report = MsmLifecycle::report($res, excerpts => $excerpts, classes => $classes{$mode},
                                      title => sprintf('%s (seed %d, %d s, run %.0f s, check %.1f s)',
                                                       $mode, $seed, $seconds, $t1 - $t0, time - $t1));
    $report .= "history: $run->{file}\n";
    $report .= 'client processes that failed: ' . scalar(@{ $run->{client_errors} }) . "\n"
        if @{ $run->{client_errors} };
    my @ferr = grep { ($_->{type} // '') eq 'fault' && $_->{error} } @{ $run->{records} };
    $report .= 'faults that went wrong: ' . scalar(@ferr) . ' ('
        . join('; ', map { "$_->{kind} $_->{target}: $_->{error}" } @ferr[0 .. ($#ferr < 2 ? $#ferr : 2)])
        . ")\n" if @ferr;
    if (my $c = $run->{meta}{msm_counters}) {
        for my $h (sort keys %$c) {
            $report .= "mod_msm counters ($h): " . join(' ', map { "$_=$c->{$h}{$_}" }
                grep { $c->{$h}{$_} } sort keys %{ $c->{$h} }) . "\n";
        }
    }
    my $rf = MsmLifecycleRun::lifecycle_dir() . "/$mode.report.txt";
    if (open my $fh, '>', $rf) { print $fh $report; close $fh }
    diag($report);

    my $st = $res->{stats};
    my $ops_floor = int($OPS_PER_S * $seconds);
    my $fault_floor = $nemesis ? int($seconds / $FAULT_EVERY) : 0;
    cmp_ok($st->{ops}, '>=', $ops_floor, "$mode: at least $ops_floor operations recorded");
    cmp_ok($st->{faults}, '>=', $fault_floor, "$mode: at least $fault_floor faults injected");
    for my $c (@{ $classes{$mode} }) {
        is(MsmLifecycle::anomaly_count($res, $c), 0, "$mode: no $c anomaly");
    }
}
