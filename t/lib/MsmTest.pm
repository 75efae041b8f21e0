package MsmTest;
# Test helpers for mod_msm (t/*.t). Core perl only (+ Apache::Test when a test
# talks to the Apache::Test server).
#
#   use Apache::Test qw(-withtestmore);   # t/TEST / prove -I t/lib put t/lib in @INC
#   use MsmTest;
#
# memcached (runs as the current user: memcached -l 127.0.0.1 -p PORT -U 0 -m 64 -t 2)
#   my $mc = MsmTest::memcached(port => 21301 [, memory => MB, threads => N, args => [...]]);
#   $mc->pid $mc->port $mc->addr $mc->running
#   $mc->stop (TERM, then KILL; reaped)   $mc->kill9   $mc->sigstop   $mc->sigcont
#   $mc->restart (same port, empty)       $mc->stats (hashref)  $mc->stat('cmd_set')
#   $mc->keys (lru_crawler metadump: key names, no get counted)  $mc->dump (key/exp/size...)
#   $mc->get($k) $mc->set($k,$v,$exp) $mc->delete($k) $mc->ttl($k) $mc->flush
#   $mc->raw("any command" [, $data_block], timeout => 2) -> answer lines
#   Every instance this process started is stopped by an END block (also on SIGTERM).
#
# extra plain httpd (not Apache::Test's): -D FOREGROUND in a session of its own
#   my $h = MsmTest::httpd(port => 21350, name => 'b1', conf => $text [, msm => 0,
#                          servers => 2, timeout => 20, mpm => 'prefork'|'event',
#                          threads => 16]);
#   $h->url $h->pid $h->children $h->stop $h->kill9 (parent + children by pid)
#   $h->kill_children $h->error_log $h->dir
#   $h->graceful (SIGUSR1 to the parent)  $h->respawn (start again, same config,
#   after kill9/stop)
#   mpm => 'event' loads mod_mpm_event instead of the suite's prefork (sized by
#   servers/threads in an <IfModule mpm_event_module> block).
#   The config gets the Apache::Test server's LoadModule lines (mod_msm included when
#   loaded there), Listen 127.0.0.1:PORT, DocumentRoot t/htdocs with the CGI app, then
#   $text with @T@ @TOP@ @PORT@ @DIR@ @APP_SESSION@ replaced.
#
# HTTP client: one client = one browser with its own cookie jar
#   my $c = MsmTest::client([vhost => 'msm_vhost2' | base => $url, keep_alive => 1]);
#   my $r = $c->get('/msm/app.cgi?op=incr&k=n');   # also ->post($path, {form}), ->request
#   $r->status $r->body $r->header('X') $r->set_cookies (list) $r->cookie('MSMSESSION')
#   $r->elapsed (seconds) $r->json $r->session $r->field('value') $r->pid $r->dump
#   $c->cookie('MSMSESSION' [, $value | undef]) $c->cookies $c->clear_cookies
#   No silent retry: a broken connection is status 599.
#
# misc
#   MsmTest::url(['msm_vhost2'])  http://127.0.0.1:PORT of the Apache::Test server/vhost
#   MsmTest::have_msm             mod_msm loaded (dies if required: MSM_REQUIRE_MODULE=1)
#   MsmTest::parallel($n, sub { my $i = shift; ...; return {...} }, timeout => 60)
#   MsmTest::parallel_start / parallel_wait: the same in two halves
#   MsmTest::wait_until(sub { cond }, timeout => 5, interval => 0.05)
#   MsmTest::log_mark / log_since($mark)  what t/logs/error_log got in between
#   MsmTest::port_open($port) MsmTest::child_pids($pid) MsmTest::descendant_pids($pid)
#
# Rules kept here: all traffic goes to 127.0.0.1; every wait is bounded in count
# and time; processes are ended only by the pids this process started (never by
# name). Ports 21301-21649 are reserved for tests (memcached and extra httpds):
# the Apache::Test config uses 21301-21303 (n1-n3) and 21311-21312 (v1-v2 of the
# msm_vhost2 virtual host).
use strict;
use warnings;

use Carp qw(croak);
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use File::Spec::Functions qw(catfile catdir);
use IO::Socket::INET ();
use IO::Select ();
use POSIX ();
use Time::HiRes qw(time sleep);

# a test killed by the harness' timeout (TERM) or ^C still runs the END blocks
# below, which stop the memcached/httpd processes it started
for my $sig (qw(TERM INT HUP)) {
    $SIG{$sig} = sub { warn "MsmTest: caught SIG$sig, cleaning up\n"; exit 128 + 15 }
        if !defined $SIG{$sig} || $SIG{$sig} eq '' || $SIG{$sig} eq 'DEFAULT';
}

# the session directives of the app's locations, for extra httpd configs
our $APP_SESSION = join "\n    ", 'Session On', 'SessionEnv On',
    'SessionHeader X-Replace-Session', 'MsmCookieName MSMSESSION path=/ httponly';

our $PORT_MIN = 21301;
our $PORT_MAX = 21649;

# ---------------------------------------------------------------- locations

my $T_DIR;
sub t_dir {
    return $T_DIR if $T_DIR;
    my $here = abs_path(dirname(__FILE__));      # .../t/lib
    $T_DIR = dirname($here);
    return $T_DIR;
}
sub top_dir  { dirname(t_dir()) }
sub logs_dir {
    my $d = catdir(t_dir(), 'logs');
    make_path($d) unless -d $d;
    return $d;
}
sub tmp_dir {
    my $d = catdir(t_dir(), 'tmp');
    make_path($d) unless -d $d;
    return $d;
}

# ---------------------------------------------------------------- small utils

# wait_until(sub { cond }, timeout => 5, interval => 0.05) -> last value of cond (false on timeout)
sub wait_until {
    my ($cond, %o) = @_;
    my $timeout  = $o{timeout}  // 5;
    my $interval = $o{interval} // 0.05;
    my $deadline = time + $timeout;
    my $max      = int($timeout / $interval) + 2;
    for (1 .. $max) {
        my $v = $cond->();
        return $v if $v;
        last if time >= $deadline;
        sleep $interval;
    }
    return;
}

sub port_open {
    my ($port, $timeout) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => $timeout // 0.5);
    return 0 unless $s;
    close $s;
    return 1;
}

sub _check_port {
    my ($port, %o) = @_;
    croak "port required" unless $port;
    croak "port $port outside the test range $PORT_MIN-$PORT_MAX"
        if !$o{any_port} && ($port < $PORT_MIN || $port > $PORT_MAX);
    croak "port $port is already in use on 127.0.0.1 (stale process of an earlier run?)"
        if port_open($port, 0.3);
}

sub _tail {
    my ($file, $lines) = @_;
    $lines ||= 20;
    open my $fh, '<', $file or return '';
    my @l = <$fh>;
    close $fh;
    splice @l, 0, @l - $lines if @l > $lines;
    return join '', @l;
}

sub _alive { my $pid = shift; return $pid && kill(0, $pid) }

# /proc based: pids whose parent is $pid (direct children)
sub child_pids {
    my $ppid = shift;
    my @kids;
    opendir my $dh, '/proc' or return;
    for my $p (grep { /^\d+$/ } readdir $dh) {
        open my $fh, '<', "/proc/$p/stat" or next;
        my $stat = <$fh>;
        close $fh;
        next unless defined $stat;
        # pid (comm) state ppid ...; comm may hold spaces/parens
        my ($pp) = $stat =~ /\)\s+\S+\s+(\d+)/;
        push @kids, $p + 0 if defined $pp && $pp == $ppid;
    }
    closedir $dh;
    return sort { $a <=> $b } @kids;
}

sub descendant_pids {
    my $pid = shift;
    my @all;
    my @todo = ($pid);
    my $guard = 0;
    while (@todo && $guard++ < 10000) {
        my $p = shift @todo;
        my @k = child_pids($p);
        push @all, @k;
        push @todo, @k;
    }
    return @all;
}

# reap $pid (our own child) within $timeout seconds; true when gone
sub _reap {
    my ($pid, $timeout) = @_;
    my $gone = wait_until(sub {
        my $r = waitpid($pid, POSIX::WNOHANG());
        return 1 if $r == $pid || $r == -1;   # -1: not our child / already reaped
        return 0;
    }, timeout => $timeout // 5, interval => 0.02);
    return $gone;
}

sub _write_pidfile {
    my ($file, $pid) = @_;
    open my $fh, '>', $file or return;
    print $fh "$pid\n";
    close $fh;
}

sub _cmdline {
    my $pid = shift;
    open my $fh, '<', "/proc/$pid/cmdline" or return '';
    local $/;
    my $c = <$fh> // '';
    close $fh;
    $c =~ tr/\0/ /;
    return $c;
}

# Ends what a killed test left running: the memcached and extra httpd processes
# named by the pid files MsmTest wrote under t/logs and t/tmp (only when the
# process' command line still matches what was started). scripts/test.sh calls it
# after the suite. Returns the list of pids it killed.
sub reap_leftovers {
    my @killed;
    for my $pf (glob(catfile(logs_dir(), 'memcached-*.pid'))) {
        my ($port) = $pf =~ /memcached-(\d+)\.pid$/;
        my $pid = _read_pid($pf);
        if ($pid && _cmdline($pid) =~ /memcached.* -p $port\b/) {
            kill 'KILL', $pid;
            push @killed, $pid;
        }
        unlink $pf;
    }
    for my $pf (glob(catfile(tmp_dir(), 'httpd-*', 'logs', 'httpd.pid'))) {
        my $dir = dirname(dirname($pf));
        my $pid = _read_pid($pf);
        if ($pid && index(_cmdline($pid), $dir) >= 0) {
            my @desc = descendant_pids($pid);
            kill 'KILL', $pid, @desc;
            push @killed, $pid, @desc;
        }
    }
    push @killed, MsmTest::Proc::reap_leftovers();   # MsmTest::process pid files
    return @killed;
}

sub _read_pid {
    my $f = shift;
    open my $fh, '<', $f or return;
    my $p = <$fh>;
    close $fh;
    return defined $p && $p =~ /^(\d+)/ ? $1 : undef;
}

# run code in $n forked workers at once; returns the list of their return values
# (each value is passed back as JSON, so plain data only). Bounded by timeout.
#   my @r = MsmTest::parallel(3, sub { my $i = shift; ...; return {...} }, timeout => 30);
sub parallel {
    my ($n, $code, %o) = @_;
    return parallel_wait(parallel_start($n, $code), timeout => $o{timeout});
}

# parallel in two halves, for a test that acts while the workers run:
#   my $p = MsmTest::parallel_start($n, sub { ... });  ...;  my @res = MsmTest::parallel_wait($p, timeout => 60);
sub parallel_start {
    my ($n, $code) = @_;
    require JSON::PP;
    my (@kids, %fh);
    for my $i (0 .. $n - 1) {
        pipe(my $r, my $w) or croak "pipe: $!";
        my $pid = fork;
        croak "fork: $!" unless defined $pid;
        if (!$pid) {
            close $r;
            my $res = eval { $code->($i) };
            my $out = $@ ? { __error => "$@" } : { __ok => $res };
            print $w JSON::PP->new->allow_nonref->allow_blessed->convert_blessed->encode($out);
            close $w;
            POSIX::_exit(0);     # no END blocks, no DESTROY in the worker
        }
        close $w;
        push @kids, $pid;
        $fh{$pid} = $r;
    }
    return { kids => \@kids, fh => \%fh };
}

sub parallel_wait {
    my ($p, %o) = @_;
    my @res;
    my $deadline = time + ($o{timeout} // 60);
    for my $pid (@{ $p->{kids} }) {
        my $r = $p->{fh}{$pid};
        my $sel = IO::Select->new($r);
        my $buf = '';
        while (1) {
            my $left = $deadline - time;
            last if $left <= 0;
            last unless $sel->can_read($left);
            my $got = sysread($r, $buf, 65536, length $buf);
            last unless $got;
        }
        close $r;
        unless (_reap($pid, 1)) {
            kill 'KILL', $pid;
            _reap($pid, 5);
        }
        my $d = eval { JSON::PP->new->allow_nonref->decode($buf) };
        if (!$d) { push @res, { __error => "worker $pid gave no result (timeout?)" }; next }
        push @res, exists $d->{__ok} ? $d->{__ok} : { __error => $d->{__error} };
    }
    return @res;
}

# ---------------------------------------------------------------- Apache::Test bits

sub _config {
    require Apache::Test;
    return Apache::Test::config();
}

# base URL of the Apache::Test server, or of one of its <VirtualHost NAME>s
sub url {
    my $vhost = shift;
    my $cfg = _config();
    my $hostport;
    if ($vhost && $vhost ne 'default') {
        $hostport = $cfg->{vhosts}{$vhost}{hostport}
            or croak "no Apache::Test vhost '$vhost'";
    }
    else {
        $hostport = join ':', $cfg->{vars}{servername}, $cfg->{vars}{port};
    }
    my ($port) = $hostport =~ /:(\d+)$/ or croak "cannot parse port of '$hostport'";
    return "http://127.0.0.1:$port";
}

sub httpd_bin {
    my $b = eval { _config()->{vars}{httpd} };
    return $b || $ENV{APACHE_TEST_HTTPD} || '/usr/sbin/apache2';
}

# true when mod_msm is part of the Apache::Test server config. With
# MSM_REQUIRE_MODULE=1 in the environment (scripts/test.sh sets it unless
# --no-module) a missing module dies instead, so mod_msm tests cannot skip silently.
sub have_msm {
    my $cfg = eval { _config() };
    my $defines = $cfg ? $cfg->{vars}{defines} // '' : '';
    my $have = $cfg && $defines !~ /\bMSM_NO_MODULE\b/
               && -e catfile(top_dir(), '.libs', 'mod_msm.so') ? 1 : 0;
    croak "mod_msm is required (MSM_REQUIRE_MODULE=1) but not loaded by the Apache::Test config"
        if !$have && $ENV{MSM_REQUIRE_MODULE};
    return $have;
}

# the Apache::Test server's error_log
sub error_log { catfile(logs_dir(), 'error_log') }

# ->mark / ->since: read what a log got after a point
#   my $m = MsmTest::log_mark(); ...; my $text = MsmTest::log_since($m);
sub log_mark {
    my $file = shift // error_log();
    return [$file, (-s $file) || 0];
}
sub log_since {
    my $mark = shift;
    my ($file, $off) = @$mark;
    open my $fh, '<', $file or return '';
    seek $fh, $off, 0;
    local $/;
    my $t = <$fh>;
    close $fh;
    return $t // '';
}

# ---------------------------------------------------------------- constructors

sub memcached { MsmTest::Memcached->start(@_) }
sub httpd     { MsmTest::Httpd->start(@_) }
sub client    { MsmTest::Client->new(@_) }

# ================================================================ memcached
package MsmTest::Memcached;
use strict;
use warnings;
use Carp qw(croak);
use File::Spec::Functions qw(catfile);
use POSIX ();
use Time::HiRes qw(time sleep);

my %LIVE;   # "$self" => $self, for the END block

sub start {
    my ($class, %o) = @_;
    my $self = bless {
        port     => $o{port},
        socket   => $o{socket},              # a Unix socket (-s) instead of the port
        auth     => $o{auth},                # [user, password]: memcached -Y, and
                                             # this object authenticates itself
        tls      => $o{tls},                 # memcached -Z: { cert, key, ca, verify,
                                             # plain_port }; this object talks to the
                                             # clear-text listener on plain_port
        memory   => $o{memory}  // 64,       # -m MB
        threads  => $o{threads} // 2,        # -t
        conns    => $o{conns}   // 1024,     # -c
        args     => $o{args}    || [],       # extra command line args
        any_port => $o{any_port},
        bin      => $o{bin}     || 'memcached',
        owner    => $$,
    }, $class;
    $self->_spawn;
    $LIVE{"$self"} = $self;
    return $self;
}

sub pid  { $_[0]{pid} }
sub port { $_[0]{port} }
sub socket_path { $_[0]{socket} }
sub addr { $_[0]{socket} ? "unix:$_[0]{socket}" : "127.0.0.1:$_[0]{port}" }
sub _tag { $_[0]{socket} ? 'unix-' . File::Basename::basename($_[0]{socket}) : $_[0]{port} }
sub log_file { catfile(MsmTest::logs_dir(), 'memcached-' . $_[0]->_tag . '.log') }
sub pid_file { catfile(MsmTest::logs_dir(), 'memcached-' . $_[0]->_tag . '.pid') }
# someone answers at the port (the socket)
sub _listening {
    my ($self, $timeout) = @_;
    return MsmTest::port_open($self->{port}, $timeout) unless $self->{socket};
    my $s = $self->_connect($timeout) or return 0;
    close $s;
    return 1;
}
sub running { my $s = shift; return $s->{pid} && MsmTest::_alive($s->{pid}) }

sub _spawn {
    my $self = shift;
    my $port = $self->{port};
    if ($self->{socket}) {
        croak "memcached socket $self->{socket} is in use" if $self->_listening(0.3);
        unlink $self->{socket};
    }
    else {
        MsmTest::_check_port($port, any_port => $self->{any_port});
    }
    # -D -: per-prefix statistics ("stats detail") split keys at '-', so that the
    # operations on mod_msm's "<prefix>msm-failures" key (prefix "<prefix>msm") are
    # told apart from those on sessions ("<prefix><hex>") and locks (no '-'); see
    # MsmTest::Memcached::failure_ops
    my @auth;
    if ($self->{auth}) {
        my $file = catfile(MsmTest::tmp_dir(), 'memcached-' . $self->_tag . '.auth');
        open my $fh, '>', $file or croak "$file: $!";
        print $fh join(':', @{ $self->{auth} }), "\n";
        close $fh;
        chmod 0600, $file;
        @auth = ('-Y', $file);
    }
    my ($listen, @tls) = ('127.0.0.1');
    if (my $t = $self->{tls}) {
        my $o = "ssl_chain_cert=$t->{cert},ssl_key=$t->{key},ssl_session_cache";
        $o .= ",ssl_ca_cert=$t->{ca},ssl_verify_mode=" . ($t->{verify} // 2) if $t->{ca};
        @tls = ('-Z', '-o', $o);
        $listen .= ",notls:127.0.0.1:$t->{plain_port}";
    }
    my @cmd = ($self->{bin}, @auth, @tls, ($self->{socket} ? ('-s', $self->{socket})
                                              : ('-l', $listen, '-p', $port)), '-U', '0',
               '-m', $self->{memory}, '-t', $self->{threads}, '-c', $self->{conns},
               (grep({ $_ eq '-D' } @{ $self->{args} }) ? () : ('-D', '-')),
               @{ $self->{args} });
    push @cmd, '-u', 'nobody' if $> == 0;
    my $log = $self->log_file;
    my $pid = fork;
    croak "fork: $!" unless defined $pid;
    if (!$pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log or POSIX::_exit(127);
        open STDERR, '>&', \*STDOUT;
        exec @cmd or POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    MsmTest::_write_pidfile($self->pid_file, $pid);
    my $died;
    my $up = MsmTest::wait_until(sub {
        my $r = waitpid($pid, POSIX::WNOHANG());
        if ($r == $pid) { $died = $?; return 1 }
        return $self->_listening(0.2);
    }, timeout => 10, interval => 0.02);
    if (defined $died || !$up) {
        kill 'KILL', $pid unless defined $died;
        MsmTest::_reap($pid, 5) unless defined $died;
        delete $self->{pid};
        croak 'memcached on ' . $self->addr . " did not come up (@cmd): "
            . (defined $died ? "exited with status $died" : "timeout")
            . "\n" . MsmTest::_tail($log);
    }
    eval { $self->raw('stats detail on') };
    return $self;
}

sub stop {
    my $self = shift;
    my $pid = delete $self->{pid} or return 1;
    return 1 if $self->{owner} != $$;
    unlink $self->pid_file;
    kill 'TERM', $pid;
    kill 'CONT', $pid;       # in case it was SIGSTOPped
    unless (MsmTest::_reap($pid, 5)) {
        kill 'KILL', $pid;
        MsmTest::_reap($pid, 5);
    }
    # wait until the port is released (bounded)
    MsmTest::wait_until(sub { !$self->_listening(0.1) }, timeout => 3);
    return 1;
}

sub kill9 {
    my $self = shift;
    my $pid = delete $self->{pid} or return 1;
    unlink $self->pid_file;
    kill 'KILL', $pid;
    MsmTest::_reap($pid, 5);
    MsmTest::wait_until(sub { !$self->_listening(0.1) }, timeout => 3);
    return 1;
}

sub sigstop { my $s = shift; kill 'STOP', $s->{pid} if $s->{pid}; $s }
sub sigcont { my $s = shift; kill 'CONT', $s->{pid} if $s->{pid}; $s }

# same port, empty cache
sub restart {
    my $self = shift;
    $self->stop;
    $self->_spawn;
    return $self;
}

sub DESTROY {}

END {
    for my $k (CORE::keys %LIVE) {
        my $m = CORE::delete $LIVE{$k};
        $m->stop if $m && $m->{owner} == $$;
    }
}

# ---- protocol

sub _connect {
    my ($self, $timeout) = @_;
    my $sock;
    if ($self->{socket}) {
        require IO::Socket::UNIX;
        $sock = IO::Socket::UNIX->new(Peer => $self->{socket}, Type => Socket::SOCK_STREAM(),
                                      Timeout => $timeout // 2);
    }
    else {
        my $port = $self->{tls} ? $self->{tls}{plain_port} : $self->{port};
        $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                      Proto => 'tcp', Timeout => $timeout // 2);
    }
    return $sock unless $sock && $self->{auth};
    # -Y: the credentials first, as "set <key> 0 0 <len>" (metadump may not share a write)
    my $cred = join ' ', @{ $self->{auth} };
    my $buf = '';
    syswrite($sock, sprintf("set auth 0 0 %d\r\n%s\r\n", length $cred, $cred));
    my $line = _readline($sock, \$buf, time + ($timeout // 2)) // '';
    return $line eq 'STORED' ? $sock : undef;
}

# read one line (bounded by the deadline)
sub _readline {
    my ($sock, $bufref, $deadline) = @_;
    my $sel = IO::Select->new($sock);
    while (1) {
        # lines end in \r\n, except metadump's "key=..." lines (\n only)
        my $i = index($$bufref, "\n");
        if ($i >= 0) {
            my $line = substr($$bufref, 0, $i);
            substr($$bufref, 0, $i + 1) = '';
            $line =~ s/\r$//;
            return $line;
        }
        my $left = $deadline - time;
        return undef if $left <= 0 || !$sel->can_read($left);
        my $got = sysread($sock, $$bufref, 65536, length $$bufref);
        return undef unless $got;
    }
}

sub _readn {
    my ($sock, $bufref, $n, $deadline) = @_;
    my $sel = IO::Select->new($sock);
    while (length($$bufref) < $n) {
        my $left = $deadline - time;
        return undef if $left <= 0 || !$sel->can_read($left);
        my $got = sysread($sock, $$bufref, 65536, length $$bufref);
        return undef unless $got;
    }
    my $d = substr($$bufref, 0, $n);
    substr($$bufref, 0, $n) = '';
    return $d;
}

my $TERMINAL = qr/^(?:END|STORED|NOT_STORED|EXISTS|NOT_FOUND|DELETED|TOUCHED|OK|ERROR
                     |CLIENT_ERROR.*|SERVER_ERROR.*|VERSION\ .*|RESET|BUSY.*|\d+
                     |HD.*|NF.*|NS.*|EX.*|EN.*|MN)$/x;

# raw($command [, $data_block], timeout => 2)
# sends "$command\r\n" (and "$data\r\n") and returns the answer as a list of
# lines (scalar context: joined with "\n"; data blocks are included as lines).
# Dies on timeout / closed connection, so a stopped memcached shows up as an error.
sub raw {
    my ($self, $cmd, @rest) = @_;
    my $data = (@rest % 2) ? shift(@rest) : undef;
    my %o = @rest;
    my $deadline = time + ($o{timeout} // 2);
    my $sock = $self->_connect($o{timeout} // 2)
        or croak 'memcached ' . $self->addr . ": connect: $!";
    my $out = "$cmd\r\n";
    $out .= "$data\r\n" if defined $data;
    syswrite($sock, $out) == length($out) or croak "memcached write: $!";
    my ($buf, @lines) = ('');
    while (1) {
        my $line = _readline($sock, \$buf, $deadline);
        croak 'memcached ' . $self->addr . ": no answer to '$cmd'" unless defined $line;
        push @lines, $line;
        if ($line =~ /^VALUE \S+ \d+ (\d+)/ || $line =~ /^VA (\d+)/) {
            my $d = _readn($sock, \$buf, $1 + 2, $deadline);
            croak "memcached: short data block" unless defined $d;
            push @lines, substr($d, 0, $1);
            next if $line =~ /^VALUE/;
            last;                                        # meta VA: single answer
        }
        last if $line =~ $TERMINAL;
    }
    close $sock;
    return wantarray ? @lines : join("\n", @lines);
}

sub stats {
    my ($self, $group) = @_;
    my %s;
    for ($self->raw(defined $group ? "stats $group" : 'stats')) {
        $s{$1} = $2 if /^STAT (\S+) (.*)$/;
    }
    return \%s;
}

sub stat {
    my ($self, $name) = @_;
    return $self->stats->{$name};
}

sub version { my ($v) = $_[0]->raw('version'); $v =~ s/^VERSION //; $v }

# value of $key or undef (counts as a get in stats)
sub get {
    my ($self, $key) = @_;
    my @l = $self->raw("get $key");
    return $l[0] =~ /^VALUE / ? $l[1] : undef;
}

sub set {
    my ($self, $key, $val, $exp, $flags) = @_;
    $val = '' unless defined $val;
    my ($r) = $self->raw(sprintf('set %s %d %d %d', $key, $flags // 0, $exp // 0, length $val), $val);
    return $r eq 'STORED';
}

sub delete {
    my ($self, $key) = @_;
    my ($r) = $self->raw("delete $key");
    return $r eq 'DELETED';
}

sub flush { my ($r) = $_[0]->raw('flush_all'); $r eq 'OK' }

# remaining TTL in seconds (-1: no expiry) or undef when missing (meta get; counts as a get)
sub ttl {
    my ($self, $key) = @_;
    my ($r) = $self->raw("mg $key t");
    return $r =~ /^HD.*\bt(-?\d+)/ ? $1 + 0 : undef;
}

# lru_crawler metadump all: list of { key, exp, la, cas, fetch, cls, size }
# (does not count as gets). Retries while the crawler is busy (bounded).
sub dump {
    my $self = shift;
    for my $try (1 .. 50) {
        my @l = $self->raw('lru_crawler metadump all', timeout => 5);
        if (@l && $l[0] =~ /^BUSY/) { sleep 0.1; next }
        croak "metadump failed: $l[-1]" if @l && $l[-1] =~ /ERROR/;
        my @items;
        for (@l) {
            next unless /^key=/;
            my %h = map { split /=/, $_, 2 } split / /;
            $h{key} =~ s/%([0-9A-Fa-f]{2})/chr(hex $1)/ge;
            push @items, \%h;
        }
        return @items;
    }
    croak "memcached 127.0.0.1:$self->{port}: lru_crawler stayed busy";
}

sub keys {
    my $self = shift;
    return sort map { $_->{key} } $self->dump;
}

# how many keys contain $hex (a session's 32 hex digits), whatever the key format
sub holds {
    my ($self, $hex) = @_;
    return scalar grep { index($_, $hex) >= 0 } eval { $self->keys };
}

# per-prefix statistics ("stats detail dump"; the instance runs with -D - and
# "stats detail on"): { prefix => { get, hit, set, del } }. Counts no operation.
sub prefix_stats {
    my $self = shift;
    my %p;
    for ($self->raw('stats detail dump')) {
        $p{$1} = { get => $2, hit => $3, set => $4, del => $5 }
            if /^PREFIX (\S+) get (\d+) hit (\d+) set (\d+) del (\d+)/;
    }
    return \%p;
}

# operations on mod_msm's published node failures, "<MsmKeyPrefix>msm-failures"
# (src/msm_store.c: read from one node at most once per second before a load, written
# when a node failed): { get, set } summed over the prefixes ending in "msm"
sub failure_ops {
    my $self = shift;
    my %f = (get => 0, set => 0);
    my $p = $self->prefix_stats;
    for my $k (grep { /msm$/ } CORE::keys %$p) {
        $f{get} += $p->{$k}{get};
        $f{set} += $p->{$k}{set};
    }
    return \%f;
}

# the copy this node holds of a session (MsmTest::parse_copy of its value; a get):
# $mc->copy($cookie_or_hex [, $prefix])
sub copy {
    my ($self, $cookie, $prefix) = @_;
    return MsmTest::parse_copy($self->get(MsmTest::session_key($cookie, $prefix)));
}

# ================================================================ extra httpd
package MsmTest::Httpd;
use strict;
use warnings;
use Carp qw(croak);
use File::Path qw(make_path remove_tree);
use File::Spec::Functions qw(catfile catdir);
use POSIX ();
use Time::HiRes qw(time sleep);

my %HLIVE;

# LoadModule lines of the Apache::Test config (t/conf/httpd.conf + extra.conf)
sub module_lines {
    my (%o) = @_;
    my @lines;
    my %seen;
    my $no_msm = !MsmTest::have_msm() || (defined $o{msm} && !$o{msm});
    for my $f (catfile(MsmTest::t_dir(), 'conf', 'httpd.conf'),
               catfile(MsmTest::t_dir(), 'conf', 'extra.conf')) {
        open my $fh, '<', $f or croak "cannot read $f (run t/TEST -configure first): $!";
        while (<$fh>) {
            next unless /^\s*LoadModule\s+(\S+)\s+"?([^"\s]+)"?/;
            my ($name, $file) = ($1, $2);
            next if $seen{$name}++;
            next if $name eq 'msm_module' && $no_msm;
            push @lines, "LoadModule $name \"$file\"";
        }
        close $fh;
    }
    return @lines;
}

# MsmTest::httpd(port => N, conf => $text [, name => 'b1', msm => 0|1,
#                servers => 2, timeout => 20, preamble => 1])
# Starts /usr/sbin/apache2 (the httpd Apache::Test uses) -D FOREGROUND in the
# background with a config written to t/tmp/httpd-NAME/. The config gets the
# LoadModule lines of the Apache::Test server (mod_msm too when it is loaded there,
# unless msm => 0), ServerRoot, PidFile, ErrorLog, Listen 127.0.0.1:PORT,
# DocumentRoot t/htdocs, the app's CGI setup and prefork sizing; then $conf,
# where @T@, @TOP@, @PORT@, @DIR@ are replaced (t/ dir, build tree, port, instance dir).
sub start {
    my ($class, %o) = @_;
    my $port = $o{port} or croak "port required";
    my $name = $o{name} // "p$port";
    my $self = bless {
        port    => $port,
        name    => $name,
        dir     => catdir(MsmTest::tmp_dir(), "httpd-$name"),
        timeout => $o{timeout} // 20,
        owner   => $$,
        httpd   => $o{httpd} || MsmTest::httpd_bin(),
    }, $class;
    MsmTest::_check_port($port, any_port => $o{any_port});
    remove_tree($self->{dir});
    make_path(catdir($self->{dir}, 'logs'));
    chmod 0755, $self->{dir};

    my $t = MsmTest::t_dir();
    my $servers = $o{servers} // 2;
    my $mpm = $o{mpm} // 'prefork';
    croak "mpm '$mpm': prefork or event" unless $mpm =~ /^(?:prefork|event)$/;
    my $threads = $o{threads} // 16;
    my $ev_limit = $servers > 4 ? $servers : 4;
    my $ev_workers = $ev_limit * $threads;
    my $conf = '';
    if ($o{preamble} // 1) {
        for my $l (module_lines(%o)) {
            # the suite's MPM is prefork (t/TEST.PL); mpm => 'event' swaps it
            if ($mpm eq 'event'
                && $l =~ /^LoadModule\s+mpm_prefork_module\s+"?([^"\s]*?)mod_mpm_prefork\.so"?/) {
                $l = "LoadModule mpm_event_module \"${1}mod_mpm_event.so\"";
            }
            $conf .= "$l\n";
        }
        $conf .= <<"EOF";
ServerRoot "$self->{dir}"
ServerName 127.0.0.1
PidFile "$self->{dir}/logs/httpd.pid"
DefaultRuntimeDir "$self->{dir}/logs"
ErrorLog "$self->{dir}/logs/error_log"
LogLevel info
<IfModule msm_module>
    LogLevel info msm:debug
</IfModule>
LogFormat "%h %l %u %t \\"%r\\" %>s %b %D" common
CustomLog "$self->{dir}/logs/access_log" common
Listen 127.0.0.1:$port
DocumentRoot "$t/htdocs"
KeepAlive On
<IfModule mime_module>
    TypesConfig /etc/mime.types
</IfModule>
<IfModule mpm_prefork_module>
    StartServers            $servers
    MinSpareServers         $servers
    MaxSpareServers         8
    ServerLimit             32
    MaxRequestWorkers       32
    MaxConnectionsPerChild  0
</IfModule>
<IfModule mpm_event_module>
    StartServers            $servers
    ServerLimit             $ev_limit
    ThreadLimit             $threads
    ThreadsPerChild         $threads
    MinSpareThreads         $threads
    MaxSpareThreads         $ev_workers
    MaxRequestWorkers       $ev_workers
    MaxConnectionsPerChild  0
</IfModule>
<Directory />
    Options FollowSymLinks
    AllowOverride None
</Directory>
<Directory "$t/htdocs/msm">
    Options +ExecCGI
    AddHandler cgi-script .cgi
    Require all granted
</Directory>
EOF
        # scripts/test.sh --fpm: the app in php-fpm (as in t/conf/extra.conf.in)
        $conf .= <<"EOF" if $ENV{MSM_TEST_FPM_SOCKET};
<Directory "$t/htdocs/msm">
    <Files "app.cgi">
        SetHandler "proxy:unix:$ENV{MSM_TEST_FPM_SOCKET}|fcgi://localhost"
        ProxyFCGISetEnvIf "true" SCRIPT_FILENAME "$t/htdocs/msm/app.php"
    </Files>
</Directory>
EOF
        $conf .= <<"EOF";
<Location /server-status>
    SetHandler server-status
</Location>
EOF
    }
    # in $conf: @T@ = the t/ dir, @TOP@ = the build tree, @PORT@ = this port,
    # @DIR@ = this instance's dir, @APP_SESSION@ = the session directives of
    # the test app's locations (as /msm/ in t/conf/extra.conf.in)
    my $user = $o{conf} // '';
    $user =~ s/\@APP_SESSION\@/$APP_SESSION/g;
    my $top = MsmTest::top_dir();
    $user =~ s/\@T\@/$t/g;
    $user =~ s/\@TOP\@/$top/g;
    $user =~ s/\@PORT\@/$port/g;
    $user =~ s/\@DIR\@/$self->{dir}/g;
    $conf .= "$user\n";
    my $cf = catfile($self->{dir}, 'httpd.conf');
    open my $fh, '>', $cf or croak "write $cf: $!";
    print $fh $conf;
    close $fh;
    $self->{conf_file} = $cf;
    $self->_spawn;
    $HLIVE{"$self"} = $self;
    return $self;
}

sub pid       { $_[0]{pid} }
sub port      { $_[0]{port} }
sub url       { "http://127.0.0.1:$_[0]{port}" }
sub dir       { $_[0]{dir} }
sub conf_file { $_[0]{conf_file} }
sub error_log { catfile($_[0]{dir}, 'logs', 'error_log') }
sub running   { my $s = shift; return $s->{pid} && MsmTest::_alive($s->{pid}) }
sub children  { my $s = shift; return $s->{pid} ? MsmTest::child_pids($s->{pid}) : () }

sub _spawn {
    my $self = shift;
    my @cmd = ($self->{httpd}, '-d', $self->{dir}, '-f', $self->{conf_file}, '-D', 'FOREGROUND');
    my $out = catfile($self->{dir}, 'logs', 'stderr.log');
    my $pid = fork;
    croak "fork: $!" unless defined $pid;
    if (!$pid) {
        # a session of its own: prefork's shutdown signals its whole process group
        # (killpg), which would otherwise include this test script
        POSIX::setsid();
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $out or POSIX::_exit(127);
        open STDERR, '>&', \*STDOUT;
        exec @cmd or POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    my $died;
    my $up = MsmTest::wait_until(sub {
        my $r = waitpid($pid, POSIX::WNOHANG());
        if ($r == $pid) { $died = $?; return 1 }
        return MsmTest::port_open($self->{port}, 0.2);
    }, timeout => $self->{timeout}, interval => 0.05);
    if (defined $died || !$up) {
        $self->kill9 unless defined $died;
        delete $self->{pid};
        croak "httpd '$self->{name}' on port $self->{port} did not come up: "
            . (defined $died ? "exited with status $died" : 'timeout') . "\n"
            . MsmTest::_tail($out) . MsmTest::_tail($self->error_log);
    }
    return $self;
}

# graceful: TERM to the parent (it stops its children), bounded; then kill9
sub stop {
    my $self = shift;
    my $pid = $self->{pid} or return 1;
    return 1 if $self->{owner} != $$;
    my @desc = MsmTest::descendant_pids($pid);
    kill 'TERM', $pid;
    if (MsmTest::_reap($pid, 10)) {
        delete $self->{pid};
        # children normally exit with the parent; kill leftovers by their pids
        _kill_list('KILL', @desc);
        MsmTest::wait_until(sub { !MsmTest::port_open($self->{port}, 0.1) }, timeout => 3);
        return 1;
    }
    return $self->kill9;
}

# SIGKILL the parent and all its descendants (children, CGIs) by pid
sub kill9 {
    my $self = shift;
    my $pid = delete $self->{pid} or return 1;
    # stopped first, the parent forks no child between the list and the kill
    # (one that escaped would go on serving, reparented to init)
    kill 'STOP', $pid;
    my @desc = MsmTest::descendant_pids($pid);
    _kill_list('KILL', @desc);
    kill 'KILL', $pid;
    MsmTest::_reap($pid, 5);
    # children reparented to init: wait until they are gone (bounded)
    MsmTest::wait_until(sub { !grep { MsmTest::_alive($_) } @desc }, timeout => 5);
    MsmTest::wait_until(sub { !MsmTest::port_open($self->{port}, 0.1) }, timeout => 3);
    return 1;
}

# graceful restart: SIGUSR1 to the parent (it re-reads its config, lets the
# children finish their requests and starts new ones); the listener stays open
sub graceful {
    my $self = shift;
    my $pid = $self->{pid} or return 0;
    return kill('USR1', $pid) ? 1 : 0;
}

# start again with the same config file (after kill9 or stop); croaks when it
# does not come up (bounded by the instance's timeout)
sub respawn {
    my $self = shift;
    croak "httpd '$self->{name}' is still running" if $self->running;
    delete $self->{pid};
    MsmTest::_check_port($self->{port}, any_port => 1);
    $self->_spawn;
    $HLIVE{"$self"} = $self;
    return $self;
}

# kill only the children (the parent respawns them)
sub kill_children {
    my ($self, $sig) = @_;
    my @k = $self->children;
    _kill_list($sig // 'KILL', @k);
    return @k;
}

sub _kill_list {
    my ($sig, @pids) = @_;
    for my $p (@pids) {
        kill $sig, $p if MsmTest::_alive($p);
    }
}

sub DESTROY {}

END {
    for my $k (keys %HLIVE) {
        my $h = delete $HLIVE{$k};
        $h->stop if $h && $h->{owner} == $$;
    }
}

# ================================================================ HTTP client
package MsmTest::Client;
use strict;
use warnings;
use Carp qw(croak);
use HTTP::Tiny ();
use Time::HiRes qw(time);

# MsmTest::client(base => URL (default: the Apache::Test server), vhost => NAME,
#                 keep_alive => 0, timeout => 15, headers => {...}, retry => 0)
# Unlike stock HTTP::Tiny, a request is sent once: no silent retry of a GET on a
# broken connection (it would hide crashed children and double an incr);
# such a failure is status 599. retry => 1 restores HTTP::Tiny's behaviour.
# One client = one browser: a cookie jar (name => value, single host) of its own.
sub new {
    my ($class, %o) = @_;
    my $self = bless {
        base    => $o{base} // MsmTest::url($o{vhost}),
        jar     => {},
        headers => $o{headers} || {},
        http    => ($o{retry} ? 'HTTP::Tiny' : 'MsmTest::HTTPTiny')->new(
            keep_alive   => $o{keep_alive} // 0,
            timeout      => $o{timeout} // 15,
            max_redirect => 0,
            agent        => 'msm-test/1',
        ),
    }, $class;
    $self->{base} =~ s{/+$}{};
    return $self;
}

sub base { $_[0]{base} }

# cookie($name) -> value; cookie($name, $value) sets; cookie($name, undef) removes
sub cookie {
    my $self = shift;
    my $name = shift;
    if (@_) {
        my $v = shift;
        if (defined $v) { $self->{jar}{$name} = $v } else { delete $self->{jar}{$name} }
    }
    return $self->{jar}{$name};
}
sub cookies       { return { %{ $_[0]{jar} } } }
sub clear_cookies { $_[0]{jar} = {} }

sub url_for {
    my ($self, $path) = @_;
    return $path if $path =~ m{^https?://};
    $path = "/$path" unless $path =~ m{^/};
    return $self->{base} . $path;
}

sub get  { my ($s, $p, %o) = @_; $s->request('GET', $p, %o) }
sub head { my ($s, $p, %o) = @_; $s->request('HEAD', $p, %o) }

# post($path, { form fields } | $raw_body, %opts)
sub post {
    my ($self, $path, $body, %o) = @_;
    my %h = %{ $o{headers} || {} };
    if (ref $body eq 'HASH') {
        $body = HTTP::Tiny->new->www_form_urlencode($body);
        $h{'content-type'} //= 'application/x-www-form-urlencoded';
    }
    return $self->request('POST', $path, %o, headers => \%h, content => $body);
}

# request($method, $path, headers => {}, content => $body, cookies => 0 to send none)
sub request {
    my ($self, $method, $path, %o) = @_;
    my %h = (%{ $self->{headers} }, %{ $o{headers} || {} });
    if (($o{cookies} // 1) && %{ $self->{jar} }) {
        $h{cookie} = join '; ', map { "$_=$self->{jar}{$_}" } sort keys %{ $self->{jar} };
    }
    my %args = (headers => \%h);
    $args{content} = $o{content} if defined $o{content};
    my $url = $self->url_for($path);
    my $t0 = time;
    my $res = $self->{http}->request($method, $url, \%args);
    my $elapsed = time - $t0;
    my $r = MsmTest::Response->new($res, $elapsed, $url);
    $self->_store_cookies($r) unless $o{no_store};
    return $r;
}

sub _store_cookies {
    my ($self, $r) = @_;
    for my $sc ($r->set_cookies) {
        my ($nv, @attrs) = split /;\s*/, $sc;
        my ($n, $v) = split /=/, $nv, 2;
        next unless defined $n && length $n;
        $n =~ s/^\s+|\s+$//g;
        $v //= '';
        my $remove = 0;
        for (@attrs) {
            my ($an, $av) = split /=/, $_, 2;
            $an = lc($an // '');
            if ($an eq 'max-age' && defined $av && $av =~ /^\s*-?\d+\s*$/ && $av <= 0) {
                $remove = 1;
            }
            elsif ($an eq 'expires' && defined $av) {
                my $t = MsmTest::Response::parse_http_date($av);
                $remove = 1 if defined $t && $t < time;
            }
        }
        if ($remove) { delete $self->{jar}{$n} } else { $self->{jar}{$n} = $v }
    }
}

# HTTP::Tiny without its retry of idempotent requests on a broken connection
package MsmTest::HTTPTiny;
use strict;
use warnings;
our @ISA = ('HTTP::Tiny');

sub request {
    my ($self, $method, $url, $args) = @_;
    $args ||= {};
    my $res = eval { $self->_request($method, $url, $args) };
    if (my $e = $@) {
        return $e if ref $e eq 'HASH' && exists $e->{status};
        $e = "$e";
        return { url => $url, success => '', status => 599, reason => 'Internal Exception',
                 content => $e,
                 headers => { 'content-type' => 'text/plain', 'content-length' => length $e } };
    }
    return $res;
}

# ================================================================ response
package MsmTest::Response;
use strict;
use warnings;
use Time::Local ();

sub new {
    my ($class, $res, $elapsed, $url) = @_;
    return bless { res => $res, elapsed => $elapsed, url => $url }, $class;
}

sub status  { $_[0]{res}{status} }
sub reason  { $_[0]{res}{reason} }
sub body    { $_[0]{res}{content} // '' }
sub content { $_[0]->body }
sub elapsed { $_[0]{elapsed} }
sub url     { $_[0]{url} }
sub is_success { $_[0]{res}{status} =~ /^2/ ? 1 : 0 }
sub headers { $_[0]{res}{headers} }

# header($name): one value (the last when repeated); in list context all values
sub header {
    my ($self, $name) = @_;
    my $v = $self->{res}{headers}{ lc $name };
    my @v = !defined $v ? () : ref $v ? @$v : ($v);
    return wantarray ? @v : $v[-1];
}

# all Set-Cookie headers, as a list of strings
sub set_cookies { my @v = $_[0]->header('set-cookie'); return @v }

# value of cookie $name in this response's Set-Cookie headers (undef if not set)
sub cookie {
    my ($self, $name) = @_;
    my $val;
    for ($self->set_cookies) {
        my ($nv) = split /;/, $_, 2;
        my ($n, $v) = split /=/, $nv, 2;
        $n =~ s/^\s+|\s+$//g;
        $val = $v // '' if $n eq $name;
    }
    return $val;
}

# decoded JSON body (undef if the body is not JSON)
sub json {
    my $self = shift;
    return $self->{json} if exists $self->{json};
    require JSON::PP;
    $self->{json} = eval { JSON::PP->new->decode($self->body) };
    return $self->{json};
}

# the test app's JSON fields, undef (never a die) when the body is not JSON:
#   $r->session (hashref), $r->field('value'), $r->pid
sub field   { my ($s, $k) = @_; my $j = $s->json; return ref $j eq 'HASH' ? $j->{$k} : undef }
sub session { $_[0]->field('session') }
sub pid     { $_[0]->field('pid') }

# "Status line + headers + body" for test diagnostics
sub dump {
    my $self = shift;
    my $h = $self->{res}{headers} || {};
    my $s = "$self->{url} -> $self->{res}{status} $self->{res}{reason}\n";
    for my $k (sort keys %$h) {
        $s .= "$k: $_\n" for ref $h->{$k} ? @{ $h->{$k} } : $h->{$k};
    }
    return $s . "\n" . $self->body;
}

my %MON = (jan => 0, feb => 1, mar => 2, apr => 3, may => 4, jun => 5,
           jul => 6, aug => 7, sep => 8, oct => 9, nov => 10, dec => 11);
sub parse_http_date {
    my $d = shift;
    # Thu, 01 Jan 1970 00:00:00 GMT  |  Thursday, 01-Jan-70 00:00:00 GMT
    if ($d =~ /(\d{1,2})[ -]([A-Za-z]{3})[ -](\d{2,4})\s+(\d\d):(\d\d):(\d\d)/) {
        my ($dd, $mon, $y, $H, $M, $S) = ($1, $MON{ lc $2 }, $3, $4, $5, $6);
        return undef unless defined $mon;
        $y += $y < 70 ? 2000 : 1900 if $y < 100;
        return eval { Time::Local::timegm($S, $M, $H, $dd, $mon, $y) };
    }
    return undef;
}

# ================================================================ node state (failover tests)
# Node health as mod_msm's shared memory has it, read through the msm-status handler.
#   MsmTest::msm_status([base => URL, path => '/msm-status'])  decoded JSON (undef on error)
#   MsmTest::node_states([base => URL])                        { id => 1 live | 0 dead }
#   MsmTest::wait_nodes_live([ids], [base => URL, app => '/msm/app.cgi', timeout => 10])
#       true once every id is live. Dead nodes are probed the way mod_msm probes them:
#       a read of a random well-formed session id on that node (after MsmNodeRetry one
#       request tries the node again and marks it live when it answers). Bounded.
#   MsmTest::random_hex()                                     32 lowercase hex digits
#   $mc->wait_stopped([timeout => 2])   after $mc->sigstop: true once all its threads are stopped
package MsmTest;

# MsmTest::session_on($base, $node, $value): a new session holding data=$value
# (via /msm/app.cgi) whose primary is node $node: (client, cookie) (up to 40 tries)
sub session_on {
    my ($base, $node, $value) = @_;
    my ($c, $sid);
    for (1 .. 40) {
        $c = client(base => $base);
        $c->get("/msm/app.cgi?op=set&k=data&v=$value");
        $sid = $c->cookie('MSMSESSION') // '';
        last if (cookie_node($sid) // '') eq $node;
    }
    return ($c, $sid);
}

# MsmTest::parallel_incr($base, $sid, $n): $n clients increment "n" of session
# $sid at once (/msm/app.cgi?op=incr); then reads it: (number of 200 answers,
# the value of n, "statuses ...; n = ..." for a diag)
sub parallel_incr { my ($base, $sid, $n) = @_; return parallel_incr_at($base, '/msm', $sid, $n) }

# MsmTest::parallel_incr_at($base, $prefix, $sid, $n): the same through
# $prefix/app.cgi (a location of its own, e.g. with MsmLocking On)
sub parallel_incr_at {
    my ($base, $prefix, $sid, $n) = @_;
    my @res = parallel($n, sub {
        my $w = client(base => $base, timeout => 20);
        $w->cookie(MSMSESSION => $sid);
        return $w->get("$prefix/app.cgi?op=incr&k=n")->status;
    }, timeout => 60);
    my $r = client(base => $base);
    $r->cookie(MSMSESSION => $sid);
    my $count = (($r->get("$prefix/app.cgi?op=read")->session // {})->{n}) // 0;
    return (scalar(grep { ($_ // 0) == 200 } @res), $count,
            'statuses ' . join(' ', map { $_ // '-' } @res) . "; n = $count");
}

# MsmTest::kill_under_load($base, $nodes, $victim, %o): 12 sessions (o{sessions})
# each with its primary and backup on the memcached objects of @$nodes; 4
# clients (o{clients}) read them in a loop for 4 s; $victim->kill9 one second
# in. Returns (sessions placed on their nodes, reads, reads that were wrong or
# empty, sessions lost afterwards, the clients' results for a diag).
sub kill_under_load {
    my ($base, $nodes, $victim, %o) = @_;
    my ($ns, $nc) = ($o{sessions} // 12, $o{clients} // 4);
    my %want;
    for my $i (1 .. $ns) {
        my $c = client(base => $base);
        $c->get("/msm/app.cgi?op=set&k=data&v=s$i");
        $want{$c->cookie('MSMSESSION') // ''} = "s$i";
    }
    my $read = sub {
        my $w = client(base => $base, timeout => 10);
        $w->cookie(MSMSESSION => $_[0]);
        return ((($w->get('/msm/app.cgi?op=read')->session // {})->{data}) // '') eq $want{$_[0]};
    };
    my $placed = wait_until(sub {
        !grep { my $h = cookie_hex($_) // ''; grep { !$_->holds($h) } @$nodes } keys %want
    }, timeout => 5);
    my $p = parallel_start($nc, sub {
        my ($n, $bad, $end) = (0, 0, time + 4);
        while (time < $end) {
            for my $s (keys %want) { $bad++ unless $read->($s); $n++ }
        }
        return [$n, $bad];
    });
    sleep 1;
    $victim->kill9;
    my @load = parallel_wait($p, timeout => 60);
    my ($reads, $wrong) = (0, 0);
    for (@load) { next unless ref $_ eq 'ARRAY'; $reads += $_->[0]; $wrong += $_->[1] }
    my $lost = grep { !$read->($_) } keys %want;
    return ($placed ? 1 : 0, $reads, $wrong, $lost, \@load);
}

# MsmTest::tls_pki(): a throwaway PKI for TLS tests in t/tmp/tls-PID (made once
# per test process with the openssl command): { dir, ca, ca_key, server, server_key
# (CN localhost, SAN DNS:localhost IP:127.0.0.1 IP:::1), client, client_key,
# other_ca (a CA nobody uses to sign), expired, expired_key (signed by ca, valid
# only in 2020) }. EC P-256 keys: quick to make.
my %PKI;
sub tls_pki {
    return \%PKI if %PKI;
    my $d = catdir(tmp_dir(), "tls-$$");
    remove_tree($d);
    make_path($d);
    my $run = sub {
        my $cmd = join ' ', @_;
        system("cd '$d' && $cmd >>openssl.log 2>&1") == 0 or croak "openssl failed: $cmd (see $d/openssl.log)";
    };
    my $key = '-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes';
    $run->("openssl req -x509 $key -keyout ca.key -out ca.pem -days 2 -subj /CN=msm-test-ca");
    $run->("openssl req -x509 $key -keyout other-ca.key -out other-ca.pem -days 2 -subj /CN=msm-other-ca");
    _write("$d/server.ext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n");
    _write("$d/client.ext", "extendedKeyUsage=clientAuth\n");
    for my $c (['server', 'localhost', 'server.ext'], ['client', 'msm-client', 'client.ext']) {
        my ($n, $cn, $ext) = @$c;
        $run->("openssl req -new $key -keyout $n.key -out $n.csr -subj /CN=$cn");
        $run->("openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
               . " -days 2 -extfile $ext -out $n.pem");
    }
    _write("$d/ca.cnf", "[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\n"
           . "serial=serial\ndefault_md=sha256\npolicy=p\ncopy_extensions=copy\n"
           . "[p]\ncommonName=supplied\n");
    _write("$d/index.txt", '');
    _write("$d/serial", "1000\n");
    $run->("openssl req -new $key -keyout expired.key -out expired.csr -subj /CN=localhost");
    $run->("openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr"
           . " -out expired.pem -notext -startdate 20200101000000Z -enddate 20200102000000Z"
           . " -extfile server.ext");
    chmod 0644, glob("$d/*");
    %PKI = (dir => $d, ca => "$d/ca.pem", ca_key => "$d/ca.key", other_ca => "$d/other-ca.pem",
            map { ($_ => "$d/$_.pem", "${_}_key" => "$d/$_.key") } qw(server client expired));
    return \%PKI;
}
sub _write {
    my ($f, $text) = @_;
    open my $fh, '>', $f or croak "$f: $!";
    print $fh $text;
    close $fh;
}

sub random_hex { join '', map { sprintf '%04x', int rand 65536 } 1 .. 8 }

# Encryption at rest (MsmEncryptKeyFile, src/msm_crypt.h):
#   MsmTest::encrypt_key()          a new key: 32 random bytes in base64 (with '=')
#   MsmTest::key_id($base64_key)    its key id as the logs print it (8 hex digits:
#                                   the first 4 bytes of SHA-256 of the 32 bytes)
#   MsmTest::sealed_id($value)      the key id a value read from memcached was sealed
#                                   with ("MSME" <id> <nonce> ...), undef when it is not
#   MsmTest::key_file($name, $text [, $mode])   writes t/tmp/$name-PID (mode 0600
#                                   unless given) and returns its path
sub encrypt_key {
    require MIME::Base64;
    open my $fh, '<:raw', '/dev/urandom' or croak "/dev/urandom: $!";
    read($fh, my $raw, 32) == 32 or croak "/dev/urandom: short read";
    close $fh;
    return MIME::Base64::encode_base64($raw, '');
}
sub key_id {
    require MIME::Base64;
    require Digest::SHA;
    my $raw = MIME::Base64::decode_base64(shift);
    croak 'key_id: not a key of 32 bytes' unless length $raw == 32;
    return unpack 'H8', Digest::SHA::sha256($raw);
}
sub sealed_id {
    my $v = shift;
    return undef unless defined $v && length $v >= 36 && substr($v, 0, 4) eq 'MSME';
    return unpack 'H8', substr($v, 4, 4);
}
sub key_file {
    my ($name, $text, $mode) = @_;
    my $f = catfile(tmp_dir(), "$name-$$");
    _write($f, $text);
    chmod $mode // 0600, $f;
    return $f;
}

# $mc->sigstop returns once the signal is sent; a memcached thread can still answer
# a request in the moment after. wait_stopped: true once every thread of the
# process is in state T (stopped), bounded.
sub MsmTest::Memcached::wait_stopped {
    my ($self, %o) = @_;
    my $pid = $self->{pid} or return 0;
    return wait_until(sub {
        opendir my $dh, "/proc/$pid/task" or return 0;
        my @tids = grep { /^\d+$/ } readdir $dh;
        closedir $dh;
        return 0 unless @tids;
        for my $t (@tids) {
            open my $fh, '<', "/proc/$pid/task/$t/stat" or return 0;
            my $st = <$fh> // '';
            close $fh;
            my ($state) = $st =~ /\)\s+(\S)/;
            return 0 unless defined $state && $state eq 'T';
        }
        return 1;
    }, timeout => $o{timeout} // 2, interval => 0.005);
}

sub msm_status {
    my %o = @_;
    my $c = MsmTest::Client->new(base => $o{base} // url(), timeout => $o{timeout} // 10);
    my $r = $c->get($o{path} // '/msm-status');
    return undef unless $r->status == 200;
    my $j = $r->json;
    return ref $j eq 'HASH' ? $j : undef;
}

sub node_states {
    my %o = @_;
    my $st = msm_status(%o) or return {};
    my %live;
    for my $n (@{ $st->{nodes} || [] }) {
        $live{ $n->{id} } = $n->{live} ? 1 : 0;
    }
    return \%live;
}

sub wait_nodes_live {
    my ($ids, %o) = @_;
    my $base = $o{base} // url();
    my $app  = $o{app} // '/msm/app.cgi';
    return wait_until(sub {
        my $st = node_states(base => $base, path => $o{path});
        my @dead = grep { !$st->{$_} } @$ids;
        return 1 unless @dead;
        for my $id (@dead) {
            my $c = MsmTest::Client->new(base => $base, timeout => 10);
            $c->cookie(MSMSESSION => random_hex() . "-$id");
            $c->get("$app?op=read");
        }
        return 0;
    }, timeout => $o{timeout} // 10, interval => $o{interval} // 0.2);
}

# ================================================================ session copies (the storage format)
# Every node holds at most ONE copy of a session, all under the same key
# "<MsmKeyPrefix><hex>" (src/msm_copy.h): the primary copy on the node the cookie
# names, a backup copy on the next live node. A copy is a header, then (kind S)
# mod_session's encoded string:
#     "MSM1 <S|D> <version: 16 hex> <written: 16 hex, apr_time_t µs> <primary id or ->[ <route>]\n"
# S = a session, D = destroyed (a tombstone: no payload, primary "-"); a sticky
# server's writes name its MsmRoute. Locks are
# "lock:<MsmKeyPrefix><hex>" on the node of the primary copy. Log lines never carry
# an id: they carry its tag, the first 8 hex digits of the SHA-1 of the 32 hex.
#   MsmTest::cookie_hex($cookie)     the 32 hex of "<hex>-<node>[.<route>]" (or of a bare hex)
#   MsmTest::cookie_node($cookie)    its node part (undef when there is none)
#   MsmTest::session_key($cookie [, $prefix])   "t:<hex>" (prefix default "t:")
#   MsmTest::lock_key($cookie [, $prefix])      "lock:t:<hex>"
#   MsmTest::session_tag($cookie)    the log tag (printf %s HEX | sha1sum | cut -c1-8)
#   MsmTest::parse_copy($raw) -> { kind => 'S'|'D', version, written (integers),
#                                  primary (node id; undef for D), route (the
#                                  writer's; undef: none), payload ('' for D) }
#                                or undef (undef, or not an MSM1 copy)
#   MsmTest::make_copy(payload => 'a=1' [, kind => 'S', version => 1,
#                      written => µs (default now), primary => 'n1'])  a value to plant
#   $mc->copy($cookie [, $prefix])   parse_copy of what the node holds (counts as a get)
#   $mc->holds($hex)                 how many of the node's keys contain $hex (any key format)
#   MsmTest::ids_in($text)           the 32-hex-digit strings in $text (session ids, which
#                                    must never be logged), each once
package MsmTest;

sub cookie_hex {
    my $c = shift // '';
    return $c =~ /^([0-9a-f]{32})(?:-|$)/ ? $1 : undef;
}

sub cookie_node {
    my $c = shift // '';
    return $c =~ /^[0-9a-f]{32}-([A-Za-z0-9_]+)/ ? $1 : undef;
}

sub session_key {
    my ($c, $prefix) = @_;
    my $hex = cookie_hex($c) // croak("session_key: no session id in '" . ($c // 'undef') . "'");
    return ($prefix // 't:') . $hex;
}

sub lock_key { return 'lock:' . session_key(@_) }

sub session_tag {
    my $hex = cookie_hex(shift) // return undef;
    require Digest::SHA;
    return substr(Digest::SHA::sha1_hex($hex), 0, 8);
}

sub parse_copy {
    my $raw = shift;
    return undef unless defined $raw;
    my ($kind, $ver, $wr, $pri, $route, $payload)
        = $raw =~ /\AMSM1 ([SD]) ([0-9a-f]{16}) ([0-9a-f]{16}) ([A-Za-z0-9_]{1,16}|-)(?: ([A-Za-z0-9_]{1,16}))?\n(.*)\z/s
        or return undef;
    return undef if ($kind eq 'D') != ($pri eq '-') || ($kind eq 'D' && (length $payload || defined $route));
    no warnings 'portable';
    return { kind => $kind, version => hex($ver), written => hex($wr),
             primary => $pri eq '-' ? undef : $pri, route => $route, payload => $payload };
}

sub make_copy {
    my %o = @_;
    my $kind = $o{kind} // 'S';
    my $written = $o{written} // int(time() * 1e6);
    return sprintf("MSM1 %s %016x %016x %s\n", $kind, $o{version} // 1, $written,
                   $kind eq 'D' ? '-' : ($o{primary} // 'n1'))
         . ($kind eq 'D' ? '' : $o{payload} // '');
}

sub ids_in {
    my $text = shift // '';
    my %seen;
    return grep { !$seen{$_}++ } $text =~ /(?<![0-9a-fA-F])([0-9a-f]{32})(?![0-9a-fA-F])/g;
}

# ================================================================ operation counts (t/1x files)
# memcached operation counters of several instances, from "stats" (which counts as
# no operation itself; note that $mc->get/->ttl do count):
#   my $s0 = MsmTest::mc_ops(\%mc);              # { NAME => {get,touch,set,delete,incr,meta,total} }
#   my $d  = MsmTest::mc_ops_delta($s0, MsmTest::mc_ops(\%mc));   # same, plus NAME '_sum'
#   my $s  = MsmTest::mc_ops_settled(\%mc [, quiet => 0.3, timeout => 4])
#            the counters once they stopped moving for `quiet` seconds (mod_msm writes
#            backups after the response); bounded by timeout
#   MsmTest::mc_ops_str($d)                     "n1 touch=1 set=1 | n2 set=1" (diagnostics)
# get = cmd_get (get/gets), touch = cmd_touch (touch, gat/gats), set = cmd_set
# (set/add/cas/...), delete = delete_hits + delete_misses (a meta "md" counts there
# too), incr = incr/decr.
# failures = the gets and sets of mod_msm's published node failures
# ("<prefix>msm-failures", read by one request per second and server before its load,
# written after a node failed; see MsmTest::Memcached::failure_ops): counted apart, and
# NOT in get, set and total, which are the operations on sessions and locks.
# A node that does not answer (stopped, killed) is left out.
package MsmTest;

our @MC_OPS = qw(get touch set delete incr meta);

sub mc_ops {
    my $mc = shift;
    my %r;
    for my $name (CORE::keys %$mc) {
        my $st = eval { $mc->{$name}->stats } or next;
        my $f = eval { $mc->{$name}->failure_ops } || { get => 0, set => 0 };
        my %o = (
            get    => ($st->{cmd_get} // 0) - $f->{get},
            touch  => $st->{cmd_touch} // 0,
            set    => ($st->{cmd_set} // 0) - $f->{set},
            delete => ($st->{delete_hits} // 0) + ($st->{delete_misses} // 0),
            incr   => ($st->{incr_hits} // 0) + ($st->{incr_misses} // 0)
                      + ($st->{decr_hits} // 0) + ($st->{decr_misses} // 0),
            meta   => $st->{cmd_meta} // 0,
            failures => $f->{get} + $f->{set},
        );
        $o{total} = 0;
        $o{total} += $o{$_} for @MC_OPS;
        $r{$name} = \%o;
    }
    return \%r;
}

sub mc_ops_delta {
    my ($a, $b) = @_;
    my %d;
    my %sum = map { $_ => 0 } @MC_OPS, 'total', 'failures';
    for my $name (CORE::keys %$b) {
        next unless $a->{$name};
        for my $k (@MC_OPS, 'total', 'failures') {
            $d{$name}{$k} = $b->{$name}{$k} - $a->{$name}{$k};
            $sum{$k} += $d{$name}{$k};
        }
    }
    $d{_sum} = \%sum;
    return \%d;
}

sub mc_ops_settled {
    my ($mc, %o) = @_;
    my $quiet = $o{quiet} // 0.3;
    my $deadline = time + ($o{timeout} // 4);
    my $last = mc_ops($mc);
    my $since = time;
    while (time < $deadline) {
        sleep 0.05;
        my $now = mc_ops($mc);
        my $same = 1;
        for my $n (CORE::keys %$now) {
            $same = 0 if !$last->{$n} || $last->{$n}{total} != $now->{$n}{total};
        }
        if (!$same) { $last = $now; $since = time; next }
        return $now if time - $since >= $quiet;
    }
    return $last;
}

sub mc_ops_str {
    my $d = shift;
    my @parts;
    for my $n (sort grep { $_ ne '_sum' } CORE::keys %$d) {
        my @nz = map { "$_=$d->{$n}{$_}" } grep { $d->{$n}{$_} } @MC_OPS, 'failures';
        push @parts, "$n " . (@nz ? join(' ', @nz) : '-');
    }
    return join ' | ', @parts;
}

# ================================================================ other servers (t/60, t/70, t/80)
# Any other server process a test needs (nutcracker, yrmcds, the fake memcached):
#   my $p = MsmTest::process(name => 'nut1', port => 21393, cmd => [...],
#                            [any_port => 1, ready => sub { ... }, timeout => 10,
#                             log => FILE (default t/logs/proc-NAME.log), setsid => 1]);
#   $p->pid $p->port $p->running $p->log_file $p->stop (TERM, then KILL) $p->kill9
#   (both end the process' descendants too, by pid)
#   $p->mc   a MsmTest::Memcached handle on its port (raw/get/set/stats), no process
# Started like memcached: in this test's process group (setsid => 1: a session of its
# own, for programs that signal their process group), pid file t/logs/proc-NAME.pid
# (reap_leftovers ends it when its command line still matches), stopped by an END block.
#   MsmTest::mc_at($port)  a MsmTest::Memcached handle on any 127.0.0.1 port (raw, get,
#                          set, stats, ...); it owns no process (stop/kill9 do nothing).
package MsmTest;

sub process { MsmTest::Proc->start(@_) }

sub mc_at {
    my $port = shift;
    return bless { port => $port, owner => $$ }, 'MsmTest::Memcached';
}

package MsmTest::Proc;
use strict;
use warnings;
use Carp qw(croak);
use File::Spec::Functions qw(catfile);
use POSIX ();
use Time::HiRes qw(time sleep);

my %PLIVE;

sub start {
    my ($class, %o) = @_;
    my $name = $o{name} or croak "name required";
    croak "name '$name': use [A-Za-z0-9_-]" unless $name =~ /^[A-Za-z0-9_-]+$/;
    my $self = bless {
        name    => $name,
        port    => $o{port},
        cmd     => $o{cmd} || croak('cmd required'),
        ready   => $o{ready},
        timeout => $o{timeout} // 10,
        log     => $o{log} // catfile(MsmTest::logs_dir(), "proc-$name.log"),
        owner   => $$,
        setsid  => $o{setsid},
    }, $class;
    MsmTest::_check_port($o{port}, any_port => $o{any_port}) if $o{port};
    $self->_spawn;
    $PLIVE{"$self"} = $self;
    return $self;
}

sub pid      { $_[0]{pid} }
sub port     { $_[0]{port} }
sub name     { $_[0]{name} }
sub log_file { $_[0]{log} }
sub pid_file { catfile(MsmTest::logs_dir(), "proc-$_[0]{name}.pid") }
sub running  { my $s = shift; return $s->{pid} && MsmTest::_alive($s->{pid}) }
sub mc       { MsmTest::mc_at($_[0]{port}) }

sub _spawn {
    my $self = shift;
    my @cmd = @{ $self->{cmd} };
    my $pid = fork;
    croak "fork: $!" unless defined $pid;
    if (!$pid) {
        POSIX::setsid() if $self->{setsid};
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $self->{log} or POSIX::_exit(127);
        open STDERR, '>&', \*STDOUT;
        exec @cmd or POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    # line 2: the command line, so that reap_leftovers never ends another process
    if (open my $fh, ">", $self->pid_file) { print $fh "$pid\n@cmd\n"; close $fh }
    my $died;
    my $up = MsmTest::wait_until(sub {
        my $r = waitpid($pid, POSIX::WNOHANG());
        if ($r == $pid) { $died = $?; return 1 }
        return $self->{ready} ? $self->{ready}->($self)
             : $self->{port}  ? MsmTest::port_open($self->{port}, 0.2)
             : 1;
    }, timeout => $self->{timeout}, interval => 0.05);
    if (defined $died || !$up) {
        $self->kill9 unless defined $died;
        delete $self->{pid};
        unlink $self->pid_file;
        croak "$self->{name} (@cmd) did not come up: "
            . (defined $died ? "exited with status $died" : 'timeout') . "\n"
            . MsmTest::_tail($self->{log});
    }
    return $self;
}

sub stop {
    my $self = shift;
    my $pid = $self->{pid} or return 1;
    return 1 if $self->{owner} != $$;
    delete $self->{pid};
    unlink $self->pid_file;
    my @desc = MsmTest::descendant_pids($pid);
    kill 'TERM', $pid;
    kill 'CONT', $pid;
    unless (MsmTest::_reap($pid, 5)) {
        kill 'KILL', $pid;
        MsmTest::_reap($pid, 5);
    }
    kill 'KILL', grep { MsmTest::_alive($_) } @desc;
    MsmTest::wait_until(sub { !MsmTest::port_open($self->{port}, 0.1) }, timeout => 3)
        if $self->{port};
    return 1;
}

sub kill9 {
    my $self = shift;
    my $pid = delete $self->{pid} or return 1;
    unlink $self->pid_file;
    my @desc = MsmTest::descendant_pids($pid);
    kill 'KILL', $pid, @desc;
    MsmTest::_reap($pid, 5);
    MsmTest::wait_until(sub { !grep { MsmTest::_alive($_) } @desc }, timeout => 5);
    MsmTest::wait_until(sub { !MsmTest::port_open($self->{port}, 0.1) }, timeout => 3)
        if $self->{port};
    return 1;
}

sub sigstop { my $s = shift; kill 'STOP', $s->{pid} if $s->{pid}; $s }
sub sigcont { my $s = shift; kill 'CONT', $s->{pid} if $s->{pid}; $s }

sub DESTROY {}

# processes of killed tests: pid files whose process still runs exactly the
# command line written there
sub reap_leftovers {
    my @killed;
    for my $pf (glob(catfile(MsmTest::logs_dir(), 'proc-*.pid'))) {
        my $pid = MsmTest::_read_pid($pf);
        my $want = '';
        if (open my $fh, '<', $pf) { <$fh>; $want = <$fh> // ''; close $fh }
        s/\s+$// for $want;
        my $cl = $pid ? MsmTest::_cmdline($pid) : '';
        $cl =~ s/\s+$//;
        if ($pid && length $want && $cl eq $want) {
            kill 'KILL', $pid;
            push @killed, $pid;
        }
        unlink $pf;
    }
    return @killed;
}

END {
    for my $k (CORE::keys %PLIVE) {
        my $p = delete $PLIVE{$k};
        $p->stop if $p && $p->{owner} == $$;
    }
}


# ================================================================ more helpers (t/23, t/36, t/37, t/51, t/63-t/66)
#   MsmTest::module_line('rewrite')   "LoadModule rewrite_module .../mod_rewrite.so" for an httpd
#                                     module the suite does not load (from the directory of the
#                                     modules it loads), for an extra httpd's conf
#   $MsmTest::STATUS_LOCATION         a <Location /msm-status> (SetHandler msm-status) for an
#                                     extra httpd's conf
#   MsmTest::app_conf($nodes, $prefix, @directives)  an extra httpd's conf: "MsmNodes $nodes",
#                                     MsmKeyPrefix $prefix, MsmOperationTimeout 500, MsmNodeRetry 1,
#                                     then @directives (a line each: a later one wins), the
#                                     app's /msm/ location (@APP_SESSION@) and /msm-status
#   MsmTest::counters($base)          the "counters" of $base's /msm-status ({} on error)
#   MsmTest::status_node($base, $id)  the node $id of $base's /msm-status (undef when missing)
#   MsmTest::delta($before, $after)   { key => after - before } of two flat hashes of numbers
#   MsmTest::cookie_attrs($set_cookie) -> (name, value, { lower-case attribute => value, 1 for
#                                     a flag }, [attribute names in the order sent])
#   MsmTest::cont_after($mc, $secs)   SIGCONT to $mc (stopped) after $secs, from a worker: a
#                                     MsmTest::parallel_start handle for parallel_wait
#   MsmTest::raw_request($base, $path, %o)  a request on a socket of its own, returned open:
#                                     o{cookie} (MSMSESSION value), o{method}; the caller closes
#                                     it (a client that goes away mid-request)
package MsmTest;

our $STATUS_LOCATION = "<Location /msm-status>\n    SetHandler msm-status\n</Location>";

sub app_conf {
    my ($nodes, $prefix, @dirs) = @_;
    return join "\n", "MsmNodes $nodes", "MsmKeyPrefix $prefix", 'MsmOperationTimeout 500',
        'MsmNodeRetry 1', @dirs, "<Location /msm/>\n    \@APP_SESSION\@\n</Location>", $STATUS_LOCATION, '';
}

sub module_line {
    my $name = shift;
    my ($any) = grep { /^LoadModule\s+\S+\s+"?\S+\/mod_\w+\.so"?$/ } MsmTest::Httpd::module_lines(msm => 0);
    my ($dir) = ($any // '') =~ /"?(\S+)\/mod_\w+\.so"?$/;
    $dir //= '/usr/lib/apache2/modules';
    croak "no $dir/mod_$name.so" unless -e "$dir/mod_$name.so";
    return "LoadModule ${name}_module \"$dir/mod_$name.so\"";
}

sub counters {
    my $st = msm_status(base => shift) or return {};
    return $st->{counters} || {};
}

sub status_node {
    my ($base, $id) = @_;
    my $st = msm_status(base => $base) or return undef;
    my ($n) = grep { ($_->{id} // '') eq $id } @{ $st->{nodes} || [] };
    return $n;
}

sub delta {
    my ($a, $b) = @_;
    return { map { $_ => ($b->{$_} // 0) - ($a->{$_} // 0) } CORE::keys %$b };
}

sub cookie_attrs {
    my ($nv, @attrs) = split /;\s*/, shift // '';
    my ($n, $v) = split /=/, $nv // '', 2;
    my (%a, @order);
    for (@attrs) {
        my ($an, $av) = split /=/, $_, 2;
        push @order, $an;
        $a{ lc $an } = $av // 1;
    }
    return ($n, $v, \%a, \@order);
}

sub cont_after {
    my ($mc, $secs) = @_;
    my $pid = $mc->pid;
    return parallel_start(1, sub { sleep $secs; kill 'CONT', $pid; return 1 });
}

sub raw_request {
    my ($base, $path, %o) = @_;
    my ($port) = $base =~ /:(\d+)$/ or croak "raw_request: no port in $base";
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp',
                                  Timeout => 5) or croak "raw_request: connect: $!";
    my $req = ($o{method} // 'GET') . " $path HTTP/1.1\r\nHost: 127.0.0.1:$port\r\n"
            . (defined $o{cookie} ? "Cookie: MSMSESSION=$o{cookie}\r\n" : '')
            . "Connection: close\r\n\r\n";
    syswrite($s, $req) == length $req or croak "raw_request: write: $!";
    return $s;
}


1;
