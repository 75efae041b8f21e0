# Big sessions and big cookies.
#   * A session of 10 000 entries, built over several requests (a CGI header line
#     is limited to 8 KB by httpd, so one X-Replace-Session cannot carry it all),
#     is stored in memcached and read back exactly.
#   * Above MsmMaxSessionSize a session is refused cleanly: 200, MSM00106 in the
#     error_log (naming the session by its tag), nothing written, the stored version
#     stays, no cookie for a new one.
#   (memcached holds each copy as "MSM1 S <version> <written> <node>\n<value>" under
#   t:<hex>: MsmTest::parse_copy)
#   * A 1 MB Cookie request header: httpd's own limit answers (400), never a 500 or
#     a crash; a 100 KB MSMSESSION value (accepted by an httpd with a large
#     LimitRequestFieldSize) is no session at all, even when it starts with a
#     valid id.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Digest::MD5 qw(md5_hex);
use File::Path qw(make_path remove_tree);
use File::Spec::Functions qw(catfile catdir);
use IO::Socket::INET ();
use IO::Select ();
use Time::HiRes qw(time sleep);

plan tests => 39,
    need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my %mc = (n1 => MsmTest::memcached(port => 21301), n2 => MsmTest::memcached(port => 21302));

# a CGI that adds entries e<from> .. e<from+n-1> (value v) with one X-Replace-Session
# header and reports what it received: entry count, HTTP_SESSION length, md5 of the
# sorted "k=v" list (so that 10 000 entries are checked without a 100 KB body)
my $cgidir = catdir(MsmTest::tmp_dir(), 'big-cgi');
remove_tree($cgidir);
make_path($cgidir);
chmod 0755, $cgidir;
my $cgi = catfile($cgidir, 'big.cgi');
open my $fh, '>', $cgi or die "$cgi: $!";
print $fh <<'CGI';
#!/usr/bin/perl
use strict;
use warnings;
use Digest::MD5 qw(md5_hex);
my %q = map { split /=/, $_, 2 } grep { length } split /&/, $ENV{QUERY_STRING} // '';
my $raw = $ENV{HTTP_SESSION} // '';
my @pairs = grep { length && !/^expiry=/ } split /&/, $raw;
my @hdr;
if (defined $q{n}) {
    my $from = $q{from} // 0;
    my $v = $q{v} // '1';
    push @hdr, 'X-Replace-Session: '
        . join('&', map { "e$_=$v" } $from .. $from + $q{n} - 1);
}
print "$_\r\n" for @hdr;
print "Content-Type: text/plain\r\nCache-Control: no-store\r\n\r\n";
print "count ", scalar(@pairs), "\nbytes ", length($raw), "\nmd5 ",
      md5_hex(join '&', sort @pairs), "\npid ", getppid(), "\n";
CGI
close $fh;
chmod 0755, $cgi;

my $conf = <<"EOF";
MsmNodes n1:127.0.0.1:21301 n2:127.0.0.1:21302
MsmKeyPrefix t:
MsmOperationTimeout 1000
MsmNodeRetry 1
LimitRequestFieldSize 262144
ScriptAlias /big/ "$cgidir/"
<Directory "$cgidir">
    Options +ExecCGI
    Require all granted
</Directory>
<Location /big/>
    \@APP_SESSION\@
</Location>
<Location /msm/>
    \@APP_SESSION\@
</Location>
EOF
my $big   = MsmTest::httpd(port => 21392, name => 'big', conf => $conf);
my $small = MsmTest::httpd(port => 21393, name => 'bigsmall',
                           conf => "MsmMaxSessionSize 4096\n$conf");

sub info {
    my $r = shift;
    my %i = $r->body =~ /^(\w+) (\S+)$/mg;
    return \%i;
}
sub expected {          # entries e0 .. e(n-1) = v
    my ($n, $v) = @_;
    my @p = map { "e$_=" . ($v // 1) } 0 .. $n - 1;
    return { count => $n, md5 => md5_hex(join '&', sort @p), bytes => length join '&', @p };
}
sub stored_raw {        # the copy memcached holds for a cookie value, on its node
    my $cv = shift // '';
    my ($node) = $cv =~ /-(n\d)$/ or return undef;
    return $mc{$node}->get(MsmTest::session_key($cv));
}
sub stored {            # the session value in it (the copy's payload)
    my $c = MsmTest::parse_copy(stored_raw(@_)) or return undef;
    return $c->{kind} eq 'S' ? $c->{payload} : undef;
}

# ------------------------------------------------------------ 10 000 entries
my $N = 10_000;
my $STEP = 900;            # "eNNNN=1&": 8 bytes each, 7.2 KB per header line
my $c = MsmTest::client(base => $big->url, keep_alive => 1, timeout => 30);
my (@codes, @times, $sid);
my $ids_stable = 1;
for (my $from = 0; $from < $N; $from += $STEP) {
    my $n = $from + $STEP > $N ? $N - $from : $STEP;
    my $r = $c->get("/big/big.cgi?from=$from&n=$n");
    push @codes, $r->status;
    push @times, $r->elapsed;
    my $cv = $c->cookie('MSMSESSION');
    $sid //= $cv;
    $ids_stable = 0 if !defined $cv || $cv ne $sid;
}
is_deeply([sort { $a <=> $b } keys %{{ map { $_ => 1 } @codes }}], [200],
          scalar(@codes) . ' requests building the session: all 200');
like($sid // '', qr/^[0-9a-f]{32}-n[12]$/, 'one session id');
ok($ids_stable, 'the id stays the same while the session grows');

my $want = expected($N);
my $r = $c->get('/big/big.cgi');
my $got = info($r);
is($got->{count}, $N, "read back: $N entries");
is($got->{md5}, $want->{md5}, 'read back: every entry exactly (md5 of the sorted list)');
is($got->{bytes}, $want->{bytes}, "read back: $want->{bytes} bytes of encoded session");
my $val = stored($sid);
is(length($val // ''), $want->{bytes}, 'memcached holds the whole encoded session');
is(md5_hex(join '&', sort grep { !/^expiry=/ } split /&/, $val // ''), $want->{md5},
   'memcached holds exactly these entries');
my $other = $sid =~ /-n1$/ ? 'n2' : 'n1';
ok(MsmTest::wait_until(sub { length((($mc{$other}->copy($sid) || {})->{payload}) // '') == $want->{bytes} },
                       timeout => 5),
   "the backup on $other is complete too");

# an unchanged big session is not written again; a change of one entry is
my $set0 = $mc{n1}->stat('cmd_set') + $mc{n2}->stat('cmd_set');
$r = $c->get('/big/big.cgi');
is(info($r)->{count}, $N, 'read again: still complete');
sleep 0.3;
is($mc{n1}->stat('cmd_set') + $mc{n2}->stat('cmd_set'), $set0,
   'reading the big session writes nothing');
$r = $c->get('/big/big.cgi?from=0&n=1&v=2');
$r = $c->get('/big/big.cgi');
my @p = map { "e$_=" . ($_ == 0 ? 2 : 1) } 0 .. $N - 1;
is(info($r)->{md5}, md5_hex(join '&', sort @p), 'one entry changed: read back with the change');
diag(sprintf 'big session: %d entries, %d bytes; %d requests, %.3f s (first) .. %.3f s (last), read %.3f s',
     $N, $want->{bytes}, scalar @times, $times[0], $times[-1], $r->elapsed);

# the other entries of the app: the usual app still works on the same session
my $ra = $c->get('/msm/app.cgi?op=incr&k=visits');
is($ra->field('value'), 1, 'the test app reads and writes the big session (incr 1)');
is(info($c->get('/big/big.cgi'))->{count}, $N + 1, 'and the entries stay: 10 001');

# ------------------------------------------------------------ MsmMaxSessionSize
{
    my $cs = MsmTest::client(base => $small->url, timeout => 30);
    my $r1 = $cs->get('/big/big.cgi?from=0&n=400');      # 3.2 KB < 4096
    is($r1->status, 200, 'small limit: a 3.2 KB session is stored');
    my $sid2 = $cs->cookie('MSMSESSION');
    like($sid2 // '', qr/^[0-9a-f]{32}-n[12]$/, 'small limit: cookie issued');
    my $v1 = stored($sid2);
    my $raw1 = stored_raw($sid2);
    is(length($v1 // ''), expected(400)->{bytes}, 'small limit: stored in memcached');

    my $mark = MsmTest::log_mark($small->error_log);
    my $r2 = $cs->get('/big/big.cgi?from=400&n=400');    # 6.4 KB > 4096
    is($r2->status, 200, 'growing over MsmMaxSessionSize: still 200');
    ok(!defined $r2->cookie('MSMSESSION'), 'growing over the limit: no Set-Cookie');
    my $log = MsmTest::log_since($mark);
    my $tag2 = MsmTest::session_tag($sid2) // 'none';
    ok($log =~ /MSM00106: session $tag2 not saved: \d+ bytes/ && !MsmTest::ids_in($log),
       "MSM00106 names the session (by its tag $tag2, not its id) and its size")
        or diag($log);
    unlike($log, qr/exit signal|Segmentation/, 'no crash');
    is(stored_raw($sid2), $raw1, 'the stored version is unchanged (not truncated, not deleted: the same copy)');
    my $r3 = $cs->get('/big/big.cgi');
    is(info($r3)->{count}, 400, 'read back: the last stored version (400 entries)');
    is(info($r3)->{md5}, expected(400)->{md5}, 'read back: exactly those entries');

    my $cn = MsmTest::client(base => $small->url, timeout => 30);
    $mark = MsmTest::log_mark($small->error_log);
    # memcached's stats, not a key listing: lru_crawler metadump may leave out
    # items that were just read, which made a listing differ by itself
    my $ops0 = MsmTest::mc_ops_settled(\%mc);
    my $r4 = $cn->get('/big/big.cgi?from=0&n=900');       # a new session of 7.2 KB
    is($r4->status, 200, 'a new session over the limit: 200');
    ok(!defined $r4->cookie('MSMSESSION'), 'a new session over the limit: no cookie');
    like(MsmTest::log_since($mark), qr/MSM00106: (?:new session|session \(new\)\S*) not saved/,
         'MSM00106 for the new session');
    is(MsmTest::mc_ops_delta($ops0, MsmTest::mc_ops_settled(\%mc))->{_sum}{set}, 0,
       'nothing was written to memcached (no set, add or cas)');
}

# ------------------------------------------------------------ big cookies

# raw HTTP: a request with one huge header line; returns the status (0: no answer)
sub raw_status {
    my ($port, $path, $cookie) = @_;
    local $SIG{PIPE} = 'IGNORE';
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5)
        or return 0;
    my $req = "GET $path HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            . "Cookie: $cookie\r\n\r\n";
    my $off = 0;
    my $sel = IO::Select->new($s);
    my $deadline = time + 10;
    while ($off < length $req && time < $deadline) {
        last unless $sel->can_write(1);
        my $n = syswrite($s, $req, 65536, $off);
        last unless $n;                     # the server stopped reading: see its answer
        $off += $n;
    }
    my $resp = '';
    while (time < $deadline && $sel->can_read(2)) {
        my $n = sysread($s, $resp, 65536, length $resp) or last;
    }
    close $s;
    return $resp =~ m{^HTTP/1\.\d (\d{3})} ? $1 : 0;
}

my $mb = 'x=' . ('a' x (1024 * 1024));
my $st1 = raw_status(21392, '/big/big.cgi', $mb);
ok($st1 == 400 || $st1 == 200, "1 MB Cookie header (LimitRequestFieldSize 256K): $st1, not 500");
my $main_port = (MsmTest::url() =~ /:(\d+)$/)[0];
my $st2 = raw_status($main_port, '/msm/app.cgi?op=read', $mb);
ok($st2 == 400 || $st2 == 200, "1 MB Cookie header (Apache::Test server, default limit): $st2, not 500");
my $st3 = raw_status($main_port, '/msm/app.cgi?op=read', "MSMSESSION=$sid" . ('0' x (100 * 1024)));
ok($st3 == 400 || $st3 == 200, "100 KB MSMSESSION on the default limit: $st3, not 500");
is(MsmTest::client(base => $big->url)->get('/big/big.cgi')->status, 200,
   'the httpd still answers after the 1 MB header');

# a 100 KB MSMSESSION value that starts with the valid id of the big session
{
    my $mark = MsmTest::log_mark($big->error_log);
    my $cb = MsmTest::client(base => $big->url, timeout => 30);
    $cb->cookie(MSMSESSION => $sid . ('0' x (100 * 1024)));
    my $rb = $cb->get('/msm/app.cgi?op=read');
    is($rb->status, 200, '100 KB MSMSESSION value: 200');
    is_deeply($rb->session, {}, '100 KB MSMSESSION value: no session (not the one its prefix names)');
    $rb = $cb->get('/msm/app.cgi?op=set&k=a&v=1');
    my $new = $rb->cookie('MSMSESSION');
    like($new // '', qr/^[0-9a-f]{32}-n[12]$/, 'a write issues a fresh id');
    isnt(substr($new // '', 0, 32), substr($sid, 0, 32), 'the fresh id is not the prefix');
    like(MsmTest::log_since($mark), qr/MSM00121: ignoring malformed MSMSESSION cookie \(10\d{4} bytes\)/,
         'MSM00121 logged at debug, with the length only');
    is(info($c->get('/big/big.cgi'))->{count}, $N + 1, 'the big session itself is untouched');
}

my $all = '';
for my $h ($big, $small) {
    for my $f ($h->error_log, catfile($h->dir, 'logs', 'stderr.log')) {
        open my $lf, '<', $f or next;
        local $/;
        $all .= <$lf> // '';
    }
}
unlike($all, qr/exit signal|Segmentation|AddressSanitizer|runtime error:/, 'no crash in either httpd');
