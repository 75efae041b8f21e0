package MsmTestRun;
# Apache::TestRun subclass used by the generated t/TEST (see t/TEST.PL).
use strict;
use warnings FATAL => 'all';

use Apache::TestRun ();
use Apache::TestConfig ();
our @ISA = qw(Apache::TestRun);

sub pre_configure {
    my $self = shift;
    # t/TEST.PL hands Apache::Test a base config holding exactly one MPM
    # (prefork, or MSM_TEST_MPM). Should a system config be inherited anyway
    # (t/TEST run with -httpd_conf of its own), never inherit another MPM next to it.
    my $mpm = $ENV{MSM_TEST_MPM} || 'prefork';
    Apache::TestConfig::autoconfig_skip_module_add(qr/^mod_mpm_(?!\Q$mpm\E\.)/);
    # mod_cgid would make a CGI's parent the cgid daemon, not the serving child
    Apache::TestConfig::autoconfig_skip_module_add('mod_cgid.c');
    $self->SUPER::pre_configure();
}

sub bug_report {
    print <<'EOF';
+--------------------------------------------------------------------+
| mod_msm Apache::Test run failed. Logs: t/logs/error_log            |
| (scripts/test.sh prints its tail). Rerun a single file with        |
|   bash scripts/test.sh --only t/NAME.t                             |
+--------------------------------------------------------------------+
EOF
}

1;
