#!/usr/bin/perl
# scripts/harness.pl - runs t/*.t files against the (already started) Apache::Test
# server with TAP::Harness and writes the assertion counts for scripts/test.sh.
#
#   perl scripts/harness.pl [--counts FILE] [--timeout SECS] [--verbose] t/a.t t/b.t ...
#
# Counts ("passed failed skipped"): passed = passed assertions that were not
# skipped (TODOs included), failed = failed assertions + files that failed
# without a failed assertion (died, bad plan, killed by the per-file timeout,
# no tests run), skipped = assertions skipped ("ok N # skip") + files skipped
# whole ("1..0 # SKIP"); each skip is listed with its reason.
# Exit status: 0 only when nothing failed.
use strict;
use warnings;
use Getopt::Long qw(GetOptions);
use TAP::Harness ();

my ($counts, $timeout, $verbose) = (undef, 300, 0);
GetOptions('counts=s' => \$counts, 'timeout=i' => \$timeout, 'verbose!' => \$verbose)
    or die "usage: $0 [--counts FILE] [--timeout SECS] [--verbose] tests...\n";
my @tests = @ARGV or die "$0: no test files given\n";

# each file runs under coreutils timeout (its own process group: on timeout the
# test and everything it started - memcached, extra httpds - get the signal)
my @exec = ($^X, '-It/lib');
unshift @exec, 'timeout', '--kill-after=10', $timeout if $timeout > 0;

my $harness = TAP::Harness->new({
    verbosity => $verbose ? 1 : 0,
    timer     => 1,
    color     => 0,
    merge     => 1,    # stderr too: a failed assertion's diag is its explanation
    exec      => \@exec,
});
# the failed assertions by name, for the summary at the end (CI keeps only the
# tail of the output; the harness's own report is far above it)
my %not_ok;
$harness->callback(made_parser => sub {
    my ($parser, $job) = @_;            # $job: [file name, description]
    my $file = $job->[1];
    my $diag = 0;   # the diag lines after a failed assertion: kept too
    $parser->callback(test => sub {
        my $r = shift;
        $diag = $r->is_ok ? 0 : 12;
        push @{ $not_ok{$file} }, $r->as_string unless $r->is_ok;
    });
    $parser->callback(comment => sub {
        push @{ $not_ok{$file} }, '  ' . $_[0]->as_string if $diag-- > 0;
    });
});
my $agg = $harness->runtests(@tests);

my ($passed, $failed, $skipped) = (0, 0, 0);
my (@bad, @skips);
for my $t ($agg->descriptions) {
    my ($p) = $agg->parsers($t);
    my $ns = scalar(() = $p->skipped);
    my $np = scalar(() = $p->passed) - $ns;
    my $nf = scalar(() = $p->failed);
    $passed += $np;
    $failed += $nf;
    $skipped += $ns;
    push @skips, "$t: $ns assertion(s) skipped" if $ns;
    if ($p->skip_all) {
        $skipped += 1;
        push @skips, "$t: skipped whole (" . $p->skip_all . ')';
    }
    my $problem = $p->has_problems || ($p->tests_run == 0 && !$p->skip_all);
    if ($nf) {
        push @bad, "$t: $nf failed assertion(s)";
        push @bad, map { "    $_" } @{ $not_ok{$t} || [] };
    }
    elsif ($problem) {
        $failed += 1;
        my @why;
        push @why, 'exit ' . $p->exit if $p->exit;
        push @why, 'wait ' . $p->wait if $p->wait;
        push @why, 'planned ' . ($p->tests_planned // '?') . ', ran ' . $p->tests_run
            if ($p->tests_planned // -1) != $p->tests_run;
        push @why, $p->parse_errors;
        push @why, 'no tests run' if $p->tests_run == 0;
        push @bad, "$t: dubious (" . join('; ', @why) . ')';
    }
}

if (@skips) {
    print "\nskipped:\n";
    print "  $_\n" for @skips;
}
if (@bad) {
    print "\nfailures:\n";
    print "  $_\n" for @bad;
}

if ($counts) {
    open my $fh, '>', $counts or die "$counts: $!\n";
    print $fh "$passed $failed $skipped\n";
    close $fh;
    for (['failures', \@bad], ['skips', \@skips]) {
        my ($what, $lines) = @$_;
        open $fh, '>', "$counts.$what" or die "$counts.$what: $!\n";
        print $fh "$_\n" for @$lines;
        close $fh;
    }
}
exit($failed ? 1 : 0);
