# Every bad directive value fails `httpd -t` with a message naming the directive
# (README, "Directives"). Each case is a minimal config written here (ServerRoot,
# Listen on a port of this file's range, mpm_prefork, authz_core, session
# and mod_msm from the Apache::Test config's LoadModule lines)
# plus the case's lines; `apache2 -t -f <conf>` must exit non-zero and print the
# directive name. Good configs (the limits of every range) say "Syntax OK".
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use File::Path qw(make_path remove_tree);
use File::Spec::Functions qw(catfile catdir);

my $NODES = 'MsmNodes n1:127.0.0.1:21321 n2:127.0.0.1:21322';
my $pki = MsmTest::tls_pki();       # a throwaway CA, server and client certificates
# key files of MsmEncryptKeyFile (README): the line that is wrong is named
my $K1 = MsmTest::encrypt_key();
my %keys = (
    bad  => MsmTest::key_file('14-keys-bad', "# keys\n\n$K1\nnot-a-key\n"),
    none => MsmTest::key_file('14-keys-none', "# only a comment\n\n"),
    dup  => MsmTest::key_file('14-keys-dup', "# new\n$K1\n\n$K1\n"),
    good => MsmTest::key_file('14-keys-good', "$K1\n"),
    open => MsmTest::key_file('14-keys-world-readable', "$K1\n", 0644),
);
sub loc { "<Location /app>\n    Session On\n    MsmCookieName MSMSESSION\n    $_[0]\n</Location>" }

# [ case, directive the message must name, config lines, with $NODES (default 1) ]
my @bad = (
    ['MsmNodes without a port',         'MsmNodes', 'MsmNodes n1:127.0.0.1', 0],
    ['MsmNodes port 0',                 'MsmNodes', 'MsmNodes n1:127.0.0.1:0', 0],
    ['MsmNodes port 65536',             'MsmNodes', 'MsmNodes n1:127.0.0.1:65536', 0],
    ['MsmNodes id "a.b"',               'MsmNodes', 'MsmNodes a.b:127.0.0.1:21321', 0],
    ['MsmNodes id of 17 chars',         'MsmNodes', 'MsmNodes ' . ('n' x 17) . ':127.0.0.1:21321', 0],
    ['MsmNodes duplicate ids',          'MsmNodes', 'MsmNodes n1:127.0.0.1:21321 n1:127.0.0.1:21322', 0],
    ['MsmNodes empty',                  'MsmNodes', 'MsmNodes', 0],
    ['MsmNodes empty id',               'MsmNodes', 'MsmNodes :127.0.0.1:21321', 0],
    ['MsmNodes relative Unix socket',   'MsmNodes', 'MsmNodes u:unix:run/mc.sock', 0],
    ['MsmNodes Unix socket with space', 'MsmNodes', 'MsmNodes "u:unix:/run/my mc.sock"', 0],
    ['MsmAuth one argument',            'MsmAuth', 'MsmAuth user'],
    ['MsmAuth user with a space',       'MsmAuth', 'MsmAuth "a b" secret'],
    ['MsmAuthFile missing',             'MsmAuthFile', 'MsmAuthFile /nonexistent/msm-auth'],
    ['MsmEncryptKeyFile missing',       "MsmEncryptKeyFile: cannot open '/nonexistent/msm-keys'",
        'MsmEncryptKeyFile /nonexistent/msm-keys'],
    ['MsmEncryptKeyFile bad key line',  "MsmEncryptKeyFile: '$keys{bad}' line 4: not a key",
        "MsmEncryptKeyFile $keys{bad}"],
    ['MsmEncryptKeyFile without a key', "MsmEncryptKeyFile: '$keys{none}' holds no key",
        "MsmEncryptKeyFile $keys{none}"],
    ['MsmEncryptKeyFile duplicate key', "MsmEncryptKeyFile: '$keys{dup}' line 4: the same key as line 2's",
        "MsmEncryptKeyFile $keys{dup}"],
    ['MsmTLS Maybe',                    'MsmTLS', 'MsmTLS Maybe'],
    ['MsmTLSCACertificateFile missing', 'MsmTLSCACertificateFile', 'MsmTLSCACertificateFile /nonexistent/ca.pem'],
    ['MsmTLSCACertificateFile not PEM', 'MsmTLSCACertificateFile',
        "MsmTLS On\nMsmTLSCACertificateFile $pki->{dir}/ca.cnf"],
    ['MsmTLSCertificateFile without its key', 'MsmTLSCertificateKeyFile',
        "MsmTLS On\nMsmTLSCertificateFile $pki->{client}"],
    ['MsmTLSCertificateKeyFile of another certificate', 'MsmTLSCertificateKeyFile',
        "MsmTLS On\nMsmTLSCertificateFile $pki->{client}\nMsmTLSCertificateKeyFile $pki->{server_key}"],
    ['MsmTLSCertificateKeyFile missing', 'MsmTLSCertificateKeyFile', 'MsmTLSCertificateKeyFile /nonexistent/k.pem'],
    ['MsmTLSVerifyName with a space',   'MsmTLSVerifyName', 'MsmTLSVerifyName "bad name"'],
    ['MsmFailoverNodes unknown id',     'MsmFailoverNodes', 'MsmFailoverNodes n9'],
    ['MsmFailoverNodes all nodes',      'MsmFailoverNodes', 'MsmFailoverNodes n1 n2'],
    ['MsmOperationTimeout 0',           'MsmOperationTimeout', 'MsmOperationTimeout 0'],
    ['MsmOperationTimeout -1',          'MsmOperationTimeout', 'MsmOperationTimeout -1'],
    ['MsmOperationTimeout abc',         'MsmOperationTimeout', 'MsmOperationTimeout abc'],
    ['MsmOperationTimeout 60001',       'MsmOperationTimeout', 'MsmOperationTimeout 60001'],
    ['MsmOperationTimeout 10ms',        'MsmOperationTimeout', 'MsmOperationTimeout 10ms'],
    ['MsmKeyPrefix "has space"',        'MsmKeyPrefix', 'MsmKeyPrefix "has space"'],
    ['MsmKeyPrefix of 65 chars',        'MsmKeyPrefix', 'MsmKeyPrefix ' . ('p' x 65)],
    ['MsmIdleTimeout 0',                'MsmIdleTimeout', 'MsmIdleTimeout 0'],
    ['MsmIdleTimeout 1296001',          'MsmIdleTimeout', 'MsmIdleTimeout 1296001'],
    ['MsmNodeRetry 0',                  'MsmNodeRetry', 'MsmNodeRetry 0'],
    ['MsmNodeRetry 3601',               'MsmNodeRetry', 'MsmNodeRetry 3601'],
    ['MsmMaxSessionSize 10',            'MsmMaxSessionSize', 'MsmMaxSessionSize 10'],
    ['MsmMaxSessionSize 134217729',     'MsmMaxSessionSize', 'MsmMaxSessionSize 134217729'],
    ['MsmLockExpire 0',                 'MsmLockExpire', 'MsmLockExpire 0'],
    ['MsmCookieName attribute foo=bar', 'MsmCookieName', loc('')
                                                         =~ s/MsmCookieName MSMSESSION/MsmCookieName MSMSESSION foo=bar/r],
    ['MsmCookieName name "a;b"',        'MsmCookieName', loc('') =~ s/MsmCookieName MSMSESSION/MsmCookieName a;b/r],
    ['MsmCookieName SameSite=Maybe',    'MsmCookieName', loc('')
                                                         =~ s/MsmCookieName MSMSESSION/MsmCookieName X SameSite=Maybe/r],
    ['MsmLocking Maybe',                'MsmLocking', loc('MsmLocking Maybe')],
    ['MsmLockTimeout -5',               'MsmLockTimeout', loc('MsmLockTimeout -5')],
    ['MsmLockTimeout 600001',           'MsmLockTimeout', loc('MsmLockTimeout 600001')],
    ['MsmLockFail Ignore',              'MsmLockFail', loc('MsmLockFail Ignore')],
    ['MsmRoute "a.b"',                  'MsmRoute', 'MsmRoute a.b'],
    ['MsmSticky On without MsmRoute',   'MsmSticky', 'MsmSticky On'],
    # MsmStickyCache <size> [<slot size>] (the local tier; it was a mod_socache provider)
    ['MsmStickyCache not a size',       'MsmStickyCache', 'MsmStickyCache nosuchcache:/tmp/x'],
    ['MsmStickyCache size 0',           'MsmStickyCache', 'MsmStickyCache 0'],
    ['MsmStickyCache slot not a multiple of 64', 'MsmStickyCache', 'MsmStickyCache 32M 1000'],
    ['MsmStickyCache slot of 64 bytes', 'MsmStickyCache', 'MsmStickyCache 32M 64'],
    ['MsmStickyCache slot above 64K',   'MsmStickyCache', 'MsmStickyCache 32M 128K'],
    ['MsmStickyCache too small for a bucket', 'MsmStickyCache', 'MsmStickyCache 1K'],
    ['MsmStickyCache in a VirtualHost', 'MsmStickyCache',
        "<VirtualHost 127.0.0.1:21320>\n    MsmStickyCache 32M\n</VirtualHost>"],
);

my @good = (
    ['minimal', $NODES],
    ['every directive at the limits of its range', join "\n",
        'MsmNodes ' . ('a' x 16) . ':127.0.0.1:1 n_2:127.0.0.1:65535 N3:[::1]:21323',
        'MsmFailoverNodes N3',
        'MsmOperationTimeout 60000',
        'MsmKeyPrefix ' . ('p' x 63) . ':',
        'MsmIdleTimeout 1296000',
        'MsmBackup On',
        'MsmBackupAsync Off',
        'MsmNodeRetry 1',
        'MsmMaxSessionSize 1024',
        'MsmLockExpire 3600',
        'MsmSticky On',
        'MsmRoute web_1',
        'MsmStickyCache 32M 128',
        "<VirtualHost 127.0.0.1:21320>\n    MsmNodes v1:127.0.0.1:21324 v2:127.0.0.1:21325\n"
        . "    MsmFailoverNodes v2\n    MsmOperationTimeout 1\n</VirtualHost>",
        "<Location /app>\n    Session On\n    MsmCookieName S_1 path=/app domain=example.org;secure;httponly SameSite=None\n"
        . "    MsmLocking Auto\n    MsmLockTimeout 0\n    MsmLockFail Proceed\n    MsmRegenerateOnLogin Off\n</Location>",
        "<Location /app/x>\n    MsmLocking Off\n    MsmLockTimeout 600000\n</Location>"],
    ['MsmTLS with every TLS directive, a Unix socket node in the list, a vhost without TLS',
        join "\n", 'MsmNodes t1:localhost:21321 t2:[::1]:21322 u:unix:/run/mc.sock', 'MsmTLS On',
        "MsmTLSCACertificateFile $pki->{ca}", "MsmTLSCertificateFile $pki->{client}",
        "MsmTLSCertificateKeyFile $pki->{client_key}", 'MsmTLSVerifyName memcached.example.net',
        "<VirtualHost 127.0.0.1:21320>\n    MsmTLS Off\n</VirtualHost>"],
    ['MsmEncryptKeyFile, and another in a VirtualHost', join "\n", "MsmEncryptKeyFile $keys{good}",
        "<VirtualHost 127.0.0.1:21320>\n    MsmEncryptKeyFile $keys{good}\n</VirtualHost>"],
    ['a Unix socket node (the path is not checked before the first connection)',
        'MsmNodes u:unix:/nonexistent/' . ('s' x 94) . ' n2:127.0.0.1:21322'],
);

plan tests => 2 * @bad + 2 * @good + 6,
    need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

# LoadModule lines of the Apache::Test config, only those a minimal config needs
my $mpm = ($ENV{MSM_TEST_MPM} || 'prefork') . '_module';   # scripts/test.sh --mpm
my %want = map { $_ => 1 } ("mpm_$mpm", qw(authz_core_module session_module msm_module));
my @load = grep { /^LoadModule\s+(\S+)/ && $want{$1} } MsmTest::Httpd::module_lines();
my %have = map { /^LoadModule\s+(\S+)/ ? ($1 => 1) : () } @load;
die "missing LoadModule lines: " . join(' ', grep { !$have{$_} } sort keys %want) . "\n"
    if keys %have != keys %want;
my $httpd = MsmTest::httpd_bin();
my $dir = catdir(MsmTest::tmp_dir(), 'cfgtest-14');
remove_tree($dir);
make_path(catdir($dir, 'logs'));

my $n = 0;
my @msgs;
sub configtest {
    my ($extra, @loads) = @_;
    @loads = @load unless @loads;
    my $conf = catfile($dir, 'httpd-' . ++$n . '.conf');
    open my $fh, '>', $conf or die "$conf: $!";
    print $fh join("\n", @loads, qq{ServerRoot "$dir"}, 'ServerName 127.0.0.1',
                   'Listen 127.0.0.1:21320', qq{PidFile "$dir/logs/httpd.pid"},
                   qq{ErrorLog "$dir/logs/error_log"}, qq{DefaultRuntimeDir "$dir/logs"},
                   $extra), "\n";
    close $fh;
    my $out = `timeout 30 $httpd -t -d $dir -f $conf 2>&1`;
    return ($? >> 8, $out // '', $conf);
}

for my $case (@bad) {
    my ($name, $directive, $lines, $with_nodes) = @$case;
    $with_nodes //= 1;
    my ($rc, $out, $conf) = configtest(($with_nodes ? "$NODES\n" : '') . $lines);
    (my $msg = $out) =~ s/\s+$//;
    isnt($rc, 0, "$name: httpd -t fails") or diag("$conf:\n$out");
    like($out, qr/\Q$directive\E/, "$name: the message names $directive")
        or diag("$conf:\n$out");
    my ($line) = grep { /\Q$directive\E/ } split /\n/, $msg;
    push @msgs, sprintf('%-34s %s', $name, $line // $msg);
}
diag("httpd -t messages:\n" . join("\n", @msgs));

for my $case (@good) {
    my ($name, $lines) = @$case;
    my ($rc, $out, $conf) = configtest($lines);
    is($rc, 0, "good config ($name): httpd -t exits 0") or diag("$conf:\n$out");
    like($out, qr/Syntax OK/, "good config ($name): Syntax OK") or diag("$conf:\n$out");
}

# a key file every user can read: a warning (MSM00160) naming it, and the config passes;
# mode 0600: no warning. No message quotes a key.
my ($rc, $out, $conf) = configtest("$NODES\nMsmEncryptKeyFile $keys{open}");
is($rc, 0, 'MsmEncryptKeyFile readable by every user: httpd -t exits 0') or diag("$conf:\n$out");
like($out, qr/MSM00160: MsmEncryptKeyFile: '\Q$keys{open}\E' is readable by every user.*Syntax OK/s,
     'MSM00160 names the file, then Syntax OK') or diag($out);
($rc, $out, $conf) = configtest("$NODES\nMsmEncryptKeyFile $keys{good}");
ok($rc == 0 && $out !~ /MSM00160/, 'mode 0600: no MSM00160') or diag($out);
ok(index(join("\n", @msgs, $out), substr($K1, 0, 12)) < 0, 'no httpd -t message quotes the key');

# load order: Debian reads mods-enabled/*.load alphabetically, msm.load before
# session.load; mod_msm finds mod_session's hooks once both are loaded. Without
# mod_session: MSM00155 names it.
my @msm_first = ((grep { !/session_module/ } @load), grep { /session_module/ } @load);
($rc, $out, $conf) = configtest("$NODES\n" . loc('MsmLocking Off'), @msm_first);
ok($rc == 0 && $out =~ /Syntax OK/, 'LoadModule msm_module before session_module: Syntax OK')
    or diag("$conf:\n$out");
($rc, $out, $conf) = configtest($NODES, grep { !/session_module/ } @load);
ok($rc != 0 && $out =~ /MSM00155: mod_msm needs mod_session/, 'without mod_session: MSM00155, httpd -t fails')
    or diag("$conf:\n$out");
