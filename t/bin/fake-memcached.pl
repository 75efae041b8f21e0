#!/usr/bin/perl
# t/bin/fake-memcached.pl - a deliberately broken memcached for t/60_fault_server.t.
#
#   perl t/bin/fake-memcached.pl --port 21390 --dir DIR [--mode good]
#
# Listens on 127.0.0.1:PORT (only there), forks one process per connection and
# speaks just enough of the memcached text protocol: get gets gat gats set add
# replace cas touch delete version stats quit. State lives in DIR (shared by the
# per-connection processes): DIR/mode, DIR/keymode/<key>, DIR/store/<key>,
# DIR/prev_reply, and DIR/log (one line per command received: "<line>", so a
# test can see what the client sent; "# desync: answered with <first line>" in
# mode desync).
#
# How it answers is chosen by a mode: the one given at start, changed at any time
# by the control command (never sent by mod_msm)
#     fake_mode NAME [ARG]           -> OK       (for every key)
#     fake_keymode KEY NAME [ARG]    -> OK       (for one key; NAME "-" removes)
#     fake_reset                     -> OK       (store, key modes, log, prev_reply)
# Modes (the reply to a retrieval is listed; other commands as noted):
#     good          a correct memcached (expiry honoured, cas values)
#     truncated     "VALUE <key> 0 <len>" header, then close (all commands: close
#                   after half a status line)
#     midvalue      header and half of the data, then close
#     garbage       64 bytes of binary junk with a CRLF, connection kept open
#     huge          "VALUE <key> 0 999999999" and a few bytes, kept open
#     servererror   "SERVER_ERROR out of memory storing object" to every command
#     slow MS       the correct reply, one byte every MS milliseconds (default 2)
#     otherkey      a whole, well-formed VALUE for another key (last hex digit
#                   changed) holding "evil=1&user=mallory"; writes work normally
#     desync        every command gets the (correct) reply of the PREVIOUS command
#                   the server received, from any connection and in any mode (a
#                   read of session B in mode good, then a read of A in mode desync:
#                   A gets B's VALUE); without a previous command, a VALUE for another key
#     trailing      the correct reply followed by an extra "END\r\n" in the same write
#     never         reads the command and never answers (connection kept open)
#     close         closes the connection without a byte
# The data written by set/add/cas is stored in every mode (only the reply is
# broken), so a test can seed sessions in mode good and read them in another.
#
# Bounded: a per-connection process exits when its peer closes, when the server
# process is gone, or after 120 s; the server exits on TERM/INT (killing its
# per-connection processes by pid) or when --lifetime seconds (default 600) passed.
use strict;
use warnings;

use Getopt::Long qw(GetOptions);
use IO::Socket::INET ();
use IO::Select ();
use POSIX ();
use File::Path qw(make_path);
use Time::HiRes qw(time sleep);

my ($port, $dir, $mode, $lifetime) = (undef, undef, 'good', 600);
GetOptions('port=i' => \$port, 'dir=s' => \$dir, 'mode=s' => \$mode,
           'lifetime=i' => \$lifetime)
    or die "usage: $0 --port N --dir DIR [--mode NAME] [--lifetime S]\n";
die "--port and --dir are required\n" unless $port && $dir;

make_path("$dir/store", "$dir/keymode");
write_file("$dir/mode", $mode);
unlink "$dir/prev_reply";

my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
                                   Proto => 'tcp', Listen => 64, ReuseAddr => 1)
    or die "fake-memcached: listen 127.0.0.1:$port: $!\n";
my $server_pid = $$;
my %kids;

sub stop_all {
    kill 'KILL', $_ for keys %kids;
    exit 0;
}
$SIG{TERM} = $SIG{INT} = $SIG{HUP} = \&stop_all;
$SIG{CHLD} = sub {
    while ((my $p = waitpid(-1, POSIX::WNOHANG())) > 0) { delete $kids{$p} }
};
$SIG{PIPE} = 'IGNORE';

print STDERR "fake-memcached $$ listening on 127.0.0.1:$port, mode $mode\n";
my $end = time + $lifetime;
my $sel = IO::Select->new($listen);
while (time < $end) {
    next unless $sel->can_read(0.5);
    my $c = $listen->accept or next;
    my $pid = fork;
    if (!defined $pid) { close $c; next }
    if ($pid == 0) {
        $SIG{TERM} = $SIG{INT} = $SIG{HUP} = 'DEFAULT';
        $SIG{CHLD} = 'DEFAULT';
        close $listen;
        serve($c);
        POSIX::_exit(0);
    }
    $kids{$pid} = 1;
    close $c;
}
stop_all();

# ------------------------------------------------------------------ state

sub write_file {
    my ($f, $data) = @_;
    my $tmp = "$f.$$.tmp";
    open my $fh, '>', $tmp or die "write $tmp: $!";
    binmode $fh;
    print $fh $data;
    close $fh;
    rename $tmp, $f or die "rename $tmp: $!";
}

sub read_file {
    my $f = shift;
    open my $fh, '<', $f or return undef;
    binmode $fh;
    local $/;
    my $d = <$fh>;
    close $fh;
    return $d;
}

sub fname { my $k = shift; $k =~ s/([^A-Za-z0-9_.:-])/sprintf('%%%02X', ord $1)/ge; $k }

sub mode_for {
    my $key = shift;
    if (defined $key) {
        my $m = read_file("$dir/keymode/" . fname($key));
        return split ' ', $m if defined $m && length $m;
    }
    my $m = read_file("$dir/mode") // 'good';
    return split ' ', $m;
}

sub log_cmd {
    my $line = shift;
    open my $fh, '>>', "$dir/log" or return;
    print $fh "$line\n";
    close $fh;
}

# item: { flags, exp (absolute, 0 = never), cas, data }
sub item_get {
    my $key = shift;
    my $raw = read_file("$dir/store/" . fname($key));
    return undef unless defined $raw;
    my ($hdr, $data) = split /\n/, $raw, 2;
    my ($flags, $exp, $cas) = split ' ', $hdr;
    if ($exp && $exp <= time) {
        unlink "$dir/store/" . fname($key);
        return undef;
    }
    return { flags => $flags, exp => $exp, cas => $cas, data => $data // '' };
}

sub abs_exp {
    my $e = shift // 0;
    return 0 if $e == 0;
    return $e > 60 * 60 * 24 * 30 ? $e : time + $e;
}

my $cas_seq = int(time * 1000) % 1000000000;
sub item_put {
    my ($key, $flags, $exp, $data) = @_;
    my $cas = ++$cas_seq . $$;
    write_file("$dir/store/" . fname($key), "$flags " . abs_exp($exp) . " $cas\n$data");
}

# ------------------------------------------------------------------ protocol

# the correct reply to one command (as memcached would answer)
sub good_reply {
    my ($cmd, $args, $data) = @_;
    if ($cmd =~ /^(get|gets|gat|gats)$/) {
        my @keys = @$args;
        my $exp;
        $exp = shift @keys if $cmd =~ /^gat/;
        my $out = '';
        for my $k (@keys) {
            my $it = item_get($k) or next;
            if (defined $exp) {
                item_put($k, $it->{flags}, $exp, $it->{data});
                $it = item_get($k) // $it;
            }
            $out .= "VALUE $k $it->{flags} " . length($it->{data})
                  . ($cmd =~ /s$/ ? " $it->{cas}" : '') . "\r\n$it->{data}\r\n";
        }
        return $out . "END\r\n";
    }
    if ($cmd =~ /^(set|add|replace|cas)$/) {
        my ($k, $flags, $exp, $len, $cas) = @$args;
        my $it = item_get($k);
        return "NOT_STORED\r\n" if $cmd eq 'add' && $it;
        return "NOT_STORED\r\n" if $cmd eq 'replace' && !$it;
        if ($cmd eq 'cas') {
            return "NOT_FOUND\r\n" unless $it;
            return "EXISTS\r\n" unless defined $cas && $cas eq $it->{cas};
        }
        item_put($k, $flags, $exp, $data);
        return "STORED\r\n";
    }
    if ($cmd eq 'touch') {
        my ($k, $exp) = @$args;
        my $it = item_get($k) or return "NOT_FOUND\r\n";
        item_put($k, $it->{flags}, $exp, $it->{data});
        return "TOUCHED\r\n";
    }
    if ($cmd eq 'delete') {
        my ($k, @rest) = @$args;
        return "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
            if @rest && $rest[0] ne 'noreply';
        return unlink("$dir/store/" . fname($k)) ? "DELETED\r\n" : "NOT_FOUND\r\n";
    }
    return "VERSION 1.6.0-fake\r\n" if $cmd eq 'version';
    return "STAT pid $server_pid\r\nSTAT fake 1\r\nEND\r\n" if $cmd eq 'stats';
    return "ERROR\r\n";
}

sub other_key {
    my $k = shift;
    my $last = substr($k, -1);
    my $repl = $last eq '0' ? '1' : '0';
    # change the last hex digit before "-node" when there is one, else the last char
    if ($k =~ /^(.*[0-9a-f])([0-9a-f])(-[A-Za-z0-9_]+)$/) {
        return $1 . ($2 eq '0' ? '1' : '0') . $3;
    }
    return substr($k, 0, -1) . $repl;
}

sub serve {
    my $c = shift;
    my $buf = '';
    my $cs = IO::Select->new($c);
    my $deadline = time + 120;
    while (time < $deadline) {
        # one command line (and its data block)
        my ($line, $data);
        while (1) {
            my $i = index($buf, "\r\n");
            if ($i >= 0) {
                $line = substr($buf, 0, $i);
                substr($buf, 0, $i + 2) = '';
                last;
            }
            return unless fill($c, $cs, \$buf, $deadline);
        }
        my ($cmd, @args) = split ' ', $line;
        $cmd //= '';
        log_cmd($line);
        if ($cmd =~ /^(set|add|replace|cas)$/) {
            my $len = $args[3] // 0;
            $len = 0 unless $len =~ /^\d+$/ && $len < 64 * 1024 * 1024;
            while (length($buf) < $len + 2) {
                return unless fill($c, $cs, \$buf, $deadline);
            }
            $data = substr($buf, 0, $len);
            substr($buf, 0, $len + 2) = '';
        }
        # control commands
        if ($cmd eq 'fake_mode') {
            write_file("$dir/mode", join(' ', @args) || 'good');
            out($c, "OK\r\n");
            next;
        }
        if ($cmd eq 'fake_keymode') {
            my ($k, @m) = @args;
            if (!@m || $m[0] eq '-') { unlink "$dir/keymode/" . fname($k) }
            else { write_file("$dir/keymode/" . fname($k), join ' ', @m) }
            out($c, "OK\r\n");
            next;
        }
        if ($cmd eq 'fake_reset') {
            unlink glob("$dir/store/*"), glob("$dir/keymode/*"), "$dir/prev_reply", "$dir/log";
            write_file("$dir/mode", 'good');
            out($c, "OK\r\n");
            next;
        }
        return if $cmd eq 'quit';

        my $is_get = $cmd =~ /^(get|gets|gat|gats)$/;
        my $key = $is_get ? $args[$cmd =~ /^gat/ ? 1 : 0] : $args[0];
        my ($m, $arg) = mode_for($key);
        $m //= 'good';
        my $good = good_reply($cmd, \@args, $data);
        # what the previous command (from any connection) should have got
        my $prev = read_file("$dir/prev_reply");
        write_file("$dir/prev_reply", $good);

        if ($m eq 'good') {
            out($c, $good);
        }
        elsif ($m eq 'truncated') {
            if ($is_get) {
                my $it = item_get($key);
                my $len = $it ? length $it->{data} : 20;
                out($c, "VALUE $key 0 $len" . ($cmd =~ /s$/ ? ' 1' : '') . "\r\n");
            }
            else {
                out($c, substr($good, 0, int(length($good) / 2)));
            }
            return;
        }
        elsif ($m eq 'midvalue') {
            if ($is_get) {
                my $it = item_get($key);
                my $d = $it ? $it->{data} : 'a=1&b=2&c=3&d=4';
                out($c, "VALUE $key 0 " . length($d) . ($cmd =~ /s$/ ? ' 1' : '') . "\r\n"
                        . substr($d, 0, int(length($d) / 2)));
            }
            else {
                out($c, substr($good, 0, int(length($good) / 2)));
            }
            return;
        }
        elsif ($m eq 'garbage') {
            out($c, join('', map { chr(int(rand(256))) } 1 .. 30) . "\r\n"
                    . "\x00\xff\xfeGARBAGE\x01\x02" . join('', map { chr(int(rand(256))) } 1 .. 19)
                    . "\r\n");
        }
        elsif ($m eq 'huge') {
            out($c, $is_get ? "VALUE $key 0 999999999\r\nxxxx" : "SERVER_ERROR huge\r\n");
        }
        elsif ($m eq 'servererror') {
            out($c, "SERVER_ERROR out of memory storing object\r\n");
        }
        elsif ($m eq 'slow') {
            my $ms = $arg // 2;
            for my $ch (split //, $good) {
                out($c, $ch) or return;
                sleep $ms / 1000;
                return if getppid() != $server_pid;
            }
        }
        elsif ($m eq 'otherkey') {
            if ($is_get) {
                my $ok = other_key($key // 'k');
                my $evil = 'evil=1&user=mallory';
                out($c, "VALUE $ok 0 " . length($evil) . ($cmd =~ /s$/ ? ' 7' : '')
                        . "\r\n$evil\r\nEND\r\n");
            }
            else {
                out($c, $good);
            }
        }
        elsif ($m eq 'desync') {
            if (!defined $prev) {
                my $ok = other_key($key // 'k');
                $prev = "VALUE $ok 0 19 9\r\nevil=1&user=mallory\r\nEND\r\n";
            }
            log_cmd('# desync: answered with ' . (split /\r\n/, $prev)[0]);
            out($c, $prev);
        }
        elsif ($m eq 'trailing') {
            out($c, $good . "END\r\n");
        }
        elsif ($m eq 'never') {
            # keep the connection, never answer (until the peer closes; bounded
            # by $deadline and the server's life)
            while (time < $deadline && getppid() == $server_pid) {
                next unless $cs->can_read(0.1);
                my $n = sysread($c, my $junk, 65536);
                return unless $n;
            }
            return;
        }
        elsif ($m eq 'close') {
            return;
        }
        else {
            out($c, "SERVER_ERROR fake-memcached: unknown mode '$m'\r\n");
        }
    }
}

sub fill {
    my ($c, $cs, $bufref, $deadline) = @_;
    while (time < $deadline) {
        return 0 if getppid() != $server_pid;
        next unless $cs->can_read(0.5);
        my $n = sysread($c, $$bufref, 65536, length $$bufref);
        return $n ? 1 : 0;
    }
    return 0;
}

sub out {
    my ($c, $s) = @_;
    my $off = 0;
    while ($off < length $s) {
        my $n = syswrite($c, $s, length($s) - $off, $off);
        return 0 unless $n;
        $off += $n;
    }
    return 1;
}
