# Encryption at rest (README, MsmEncryptKeyFile): two memcached e1 (21421) and
# e2 (21422); httpds of this file on 21420 (key file [old], later [new, old]),
# 21423 (another key, one child), 21424 (no MsmEncryptKeyFile) and 21425
# (sticky, key [new]), all with MsmBackup On on the same nodes and prefix.
#   - after a mod_auth_form login (user name and password in the session) and
#     writes with unique markers, while a request holds the session's lock
#     (MsmLocking On): no value on any node holds the password, the user name,
#     a marker, an entry name or a copy header in clear; session values start
#     with "MSME" and the key id of [old];
#   - CRUD; a logout leaves sealed tombstones on both nodes; kill -9 of the
#     primary's memcached: the backup serves the session;
#   - operation counts: an unmodified read is one operation (gats), re-setting
#     the same value writes nothing, the same as without encryption;
#   - another key: no session, no 500, exactly one MSM00170 line; the copies
#     are not written over (a save makes a new id);
#   - a value copied under another session's key, and a clear-text copy: no
#     session, no 500 (MSM00171);
#   - rotation by a graceful restart with [new, old]: old sessions are still
#     served, rewritten ones carry the new key id (bytes 4..7 change);
#   - sticky mode: memcached holds sealed values, a local read costs nothing;
#   - no log line holds a whole session id or a key.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Digest::SHA qw(sha1_base64);
use Time::HiRes qw(time sleep);

plan tests => 41,
    need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() },
    need_module('mod_auth_form.c');

my %mc = (e1 => MsmTest::memcached(port => 21421), e2 => MsmTest::memcached(port => 21422));
my %other = (e1 => 'e2', e2 => 'e1');
my ($K_OLD, $K_NEW, $K_OTHER) = map { MsmTest::encrypt_key() } 1 .. 3;
my ($ID_OLD, $ID_NEW, $ID_OTHER) = map { MsmTest::key_id($_) } $K_OLD, $K_NEW, $K_OTHER;
my $keys = MsmTest::key_file('18-keys', "# current key\n$K_OLD\n");
my $keys_other = MsmTest::key_file('18-keys-other', "$K_OTHER\n");
# without padding, CRLF, a comment: as an editor may leave it
(my $new_bare = $K_NEW) =~ s/=$//;
my $keys_sticky = MsmTest::key_file('18-keys-sticky', "# sticky\r\n$new_bare\r\n");

my $TAG = MsmTest::random_hex();
my ($USER, $PASS) = ('u' . substr($TAG, 0, 12), 'Pw-' . substr($TAG, 12) . '-x9');
my $htpasswd = MsmTest::key_file('18-htpasswd', "$USER:{SHA}" . sha1_base64($PASS) . "=\n");
my $SECRETS = qr/\Q$USER\E|\Q$PASS\E|MARK-$TAG|msm18-|data=|MSM1 /;

sub app {
    my ($port, $name, $crypt, %o) = @_;
    my $one = $o{one_child} ? <<'EOF' : '';
<IfModule mpm_prefork_module>
    StartServers 1
    MinSpareServers 1
    MaxSpareServers 1
    MaxRequestWorkers 1
    ServerLimit 1
</IfModule>
<IfModule mpm_event_module>
    StartServers 1
    ServerLimit 1
    MinSpareThreads 1
    MaxSpareThreads 16
    ThreadsPerChild 16
    MaxRequestWorkers 16
</IfModule>
EOF
    return MsmTest::httpd(port => $port, name => "18-$name", servers => $o{one_child} ? 1 : 2,
                          conf => <<"EOF");
MsmNodes e1:127.0.0.1:21421 e2:127.0.0.1:21422
MsmKeyPrefix t:
MsmOperationTimeout 500
MsmNodeRetry 1
MsmBackup On
$crypt
$one
Alias /lock/ "\@T\@/htdocs/msm/"
Alias /auth/app/ "\@T\@/htdocs/msm/"
<Location /msm/>
    \@APP_SESSION\@
</Location>
<Location /lock/>
    \@APP_SESSION\@
    MsmLocking On
</Location>
<Location /auth/>
    \@APP_SESSION\@
    MsmLocking On
    AuthType form
    AuthName msm18
    AuthFormProvider file
    AuthUserFile "$htpasswd"
</Location>
<Location /auth/app/>
    AuthFormLoginRequiredLocation /msm/login.html
    Require valid-user
</Location>
<Location /auth/dologin>
    SetHandler form-login-handler
    AuthFormLoginRequiredLocation /msm/login.html?failed
    AuthFormLoginSuccessLocation /auth/app/app.cgi?op=read
    Require all granted
</Location>
<Location /msm-status>
    SetHandler msm-status
</Location>
EOF
}
sub node_of { MsmTest::cookie_node(@_) // '' }
sub data_of { my $r = shift; return (($r->session // {})->{data}) // '' }
sub key_of  { MsmTest::session_key($_[0]) }
sub raw_of  { my ($n, $sid) = @_; return $mc{$n}->get(key_of($sid)) }
sub ids_on  { my $sid = shift; return join ' ', map { MsmTest::sealed_id(raw_of($_, $sid)) // '-' } sort keys %mc }
sub all_values {           # "node key" => value, of every key on every node (the
    my @known = @_;        # crawler's list, which can miss an item just moved
    my %v;                 # between LRU segments, and the keys named here)
    for my $n (sort keys %mc) {
        my %seen;
        for my $k (grep { !$seen{$_}++ } $mc{$n}->keys, @known) {
            my $v = $mc{$n}->get($k);
            $v{"$n $k"} = $v if defined $v;
        }
    }
    return \%v;
}
sub on_both {              # bounded: both nodes hold a value of this session
    my $sid = shift;
    return MsmTest::wait_until(sub { !grep { !defined raw_of($_, $sid) } keys %mc }, timeout => 5);
}
sub client_of { my ($url, $sid) = @_; my $c = MsmTest::client(base => $url); $c->cookie(MSMSESSION => $sid); $c }
sub ops_of {               # (what $code returned, memcached operations it caused)
    my $code = shift;
    my $s0 = MsmTest::mc_ops_settled(\%mc, quiet => 0.2);
    my $r = $code->();
    return ($r, MsmTest::mc_ops_delta($s0, MsmTest::mc_ops_settled(\%mc, quiet => 0.4)));
}

my $h = app(21420, 'sealed', "MsmEncryptKeyFile $keys");
my $url = $h->url;
ok(MsmTest::wait_nodes_live([qw(e1 e2)], base => $url), 'httpd (21420) with MsmEncryptKeyFile: e1 and e2 live');

# ---------------------------------------------------------------- login, writes, the lock
my $c = MsmTest::client(base => $url);
my $r = $c->post('/auth/dologin', { httpd_username => $USER, httpd_password => $PASS });
like($r->status, qr/^30[23]$/, 'mod_auth_form login: redirect (' . $r->status . ')') or diag($r->dump);
$r = $c->get('/auth/app/app.cgi?op=set&k=data&v=MARK-' . $TAG . '-1');
my $sid = $c->cookie('MSMSESSION') // '';
my $in = $r->session // {};
ok($r->status == 200 && ($in->{'msm18-user'} // '') eq $USER && ($in->{'msm18-pw'} // '') eq $PASS
   && data_of($r) eq "MARK-$TAG-1",
   'the protected page: user name and password in the session, a marker written')
    or diag($r->dump);
$r = $c->get("/lock/app.cgi?op=set&k=note&v=MARK-$TAG-2");
is(($r->session // {})->{note}, "MARK-$TAG-2", 'a second write (under MsmLocking On)');
ok(on_both($sid), 'primary and backup copies on e1 and e2');

# a request holds the session's lock while every value of both nodes is read
my $lock_req = MsmTest::parallel_start(1, sub {
    return client_of($url, $sid)->get('/lock/app.cgi?op=sleep&ms=1500')->status;
});
my $lock_node = MsmTest::wait_until(sub {
    (grep { defined $mc{$_}->get(MsmTest::lock_key($sid)) } sort keys %mc)[0];
}, timeout => 5, interval => 0.02);
my $vals = all_values(key_of($sid), MsmTest::lock_key($sid));
my ($lock_status) = MsmTest::parallel_wait($lock_req, timeout => 20);
my @sess = grep { /^\S+ t:[0-9a-f]{32}$/ } sort keys %$vals;
my @locks = grep { /^\S+ lock:/ } sort keys %$vals;
ok($lock_node && @locks && ($lock_status // 0) == 200,
   'a lock item was there while the request slept (' . scalar(@locks) . ' lock items, '
   . scalar(keys %$vals) . ' values in all)');
my @clear = grep { $vals->{$_} =~ $SECRETS } sort keys %$vals;
ok(!@clear, 'no value on e1 or e2 (sessions, backups, locks) holds the password, the user name, '
   . 'a marker, an entry name or a copy header in clear')
    or diag('in clear: ' . join ' ', map { my ($n, $k) = split / /; "$n " . (MsmTest::session_tag(substr $k, -32) // '?') } @clear);
my @not_sealed = grep { ($vals->{$_} // '') !~ /\AMSME/ } @sess;
ok(@sess >= 2 && !@not_sealed, scalar(@sess) . ' session values, each starts with MSME')
    or diag(scalar(@not_sealed) . ' not sealed');
is(ids_on($sid), "$ID_OLD $ID_OLD", "both copies carry the key id of [old] ($ID_OLD)");

# ---------------------------------------------------------------- CRUD, logout
$r = $c->get('/auth/app/app.cgi?op=read');
ok(data_of($r) eq "MARK-$TAG-1" && (($r->session // {})->{note} // '') eq "MARK-$TAG-2", 'read back: both entries');
$r = $c->get("/msm/app.cgi?op=set&k=data&v=MARK-$TAG-3");
$r = $c->get('/msm/app.cgi?op=read');
is(data_of($r), "MARK-$TAG-3", 'update, read back');
my $tomb_len = length(MsmTest::make_copy(kind => 'D')) + 36;
$r = $c->get('/msm/app.cgi?op=destroy');
my $tombs = MsmTest::wait_until(sub {
    !grep { length(raw_of($_, $sid) // '') != $tomb_len } keys %mc
}, timeout => 5);
ok($r->status == 200 && $tombs && ids_on($sid) eq "$ID_OLD $ID_OLD",
   "logout: both nodes hold a sealed tombstone ($tomb_len bytes, key id $ID_OLD)")
    or diag('lengths ' . join(' ', map { length(raw_of($_, $sid) // '') } sort keys %mc));
my $after = client_of($url, $sid)->get('/auth/app/app.cgi?op=read');
isnt($after->status, 200, 'the protected page with the old cookie after the logout: ' . $after->status);

# ---------------------------------------------------------------- failover
my ($fc, $fsid) = MsmTest::session_on($url, 'e1', "MARK-$TAG-4");
ok(node_of($fsid) eq 'e1' && on_both($fsid), 'a session on e1, its backup on e2');
$mc{e1}->kill9;
$r = $fc->get('/msm/app.cgi?op=read');
ok($r->status == 200 && data_of($r) eq "MARK-$TAG-4", 'kill -9 of e1: the backup on e2 serves it')
    or diag($r->dump);
$mc{e1} = MsmTest::memcached(port => 21421);
ok(MsmTest::wait_nodes_live([qw(e1 e2)], base => $url, timeout => 15), 'e1 back (empty) and live');

# ---------------------------------------------------------------- operation counts
sub costs {                # what reads and an unchanged write cost through $base
    my $base = shift;
    my $cc = MsmTest::client(base => $base);
    $cc->get('/msm/app.cgi?op=set&k=data&v=counted');
    on_both($cc->cookie('MSMSESSION') // '');
    my (undef, $read) = ops_of(sub { $cc->get('/msm/app.cgi?op=read') });
    my (undef, $same) = ops_of(sub { $cc->get('/msm/app.cgi?op=set&k=data&v=counted') });
    my ($rd, $d5) = ops_of(sub { my $x; $x = $cc->get('/msm/app.cgi?op=read') for 1 .. 5; $x });
    return { read_total => $read->{_sum}{total}, read_set => $read->{_sum}{set},
             same_set => $same->{_sum}{set}, same_total => $same->{_sum}{total},
             five_total => $d5->{_sum}{total}, data => data_of($rd),
             str => join(' / ', map { MsmTest::mc_ops_str($_) } $read, $same, $d5) };
}
my $plain = app(21424, 'plain', '');
ok(MsmTest::wait_nodes_live([qw(e1 e2)], base => $plain->url), 'httpd (21424) without encryption: nodes live');
my $sealed_cost = costs($url);
my $plain_cost = costs($plain->url);
my $str = "sealed: $sealed_cost->{str}; plain: $plain_cost->{str}";
ok($sealed_cost->{read_total} == 1 && $sealed_cost->{read_set} == 0 && $sealed_cost->{same_set} == 0
   && $sealed_cost->{same_total} == 1 && $sealed_cost->{five_total} == 5 && $sealed_cost->{data} eq 'counted',
   'encrypted: an unmodified read is 1 operation, re-setting the same value writes nothing, 5 reads 5')
    or diag($str);
delete @$_{qw(str)} for $sealed_cost, $plain_cost;
is_deeply($sealed_cost, $plain_cost, 'the same counts as without encryption') or diag($str);

# a clear-text session (written by 21424) is not served by 21420
my $pc = MsmTest::client(base => $plain->url);
$pc->get("/msm/app.cgi?op=set&k=data&v=MARK-$TAG-5");
my $psid = $pc->cookie('MSMSESSION') // '';
ok(on_both($psid) && (MsmTest::parse_copy(raw_of(node_of($psid), $psid)) // {})->{payload} =~ /MARK-$TAG-5/,
   'the server without a key file writes clear text');
my $mark = MsmTest::log_mark($h->error_log);
$r = client_of($url, $psid)->get('/msm/app.cgi?op=read');
my $log = MsmTest::log_since($mark);
ok($r->status == 200 && !%{ $r->session // {} } && $log =~ /MSM00171: node e[12] holds a value under a session key that is not sealed/,
   'a clear-text copy with MsmEncryptKeyFile: 200, no session, MSM00171 (not sealed)')
    or diag($r->dump . $log);
$plain->stop;

# ---------------------------------------------------------------- copied under another key
my ($c1, $sid1) = MsmTest::session_on($url, 'e1', "MARK-$TAG-6");
my ($c2, $sid2) = MsmTest::session_on($url, 'e1', "MARK-$TAG-7");
ok(on_both($sid1) && on_both($sid2), 'two sessions on e1 (backups on e2)');
for my $n (sort keys %mc) {
    my $v = raw_of($n, $sid1);
    $mc{$n}->set(key_of($sid2), $v, 600) if defined $v;    # the text protocol's set
}
$mark = MsmTest::log_mark($h->error_log);
$r = $c2->get('/msm/app.cgi?op=read');
$log = MsmTest::log_since($mark);
ok($r->status == 200 && !%{ $r->session // {} }, "a value copied under another session's key: 200, no session")
    or diag($r->dump);
like($log, qr/MSM00171: node e[12] holds a value under a session key that does not open with its key/,
     'MSM00171: does not open with its key');
is(data_of($c1->get('/msm/app.cgi?op=read')), "MARK-$TAG-6", 'the session it was copied from is served as before');

# ---------------------------------------------------------------- another key
my $o = app(21423, 'other-key', "MsmEncryptKeyFile $keys_other", one_child => 1);
ok(MsmTest::wait_nodes_live([qw(e1 e2)], base => $o->url), 'httpd (21423, one child) with another key: nodes live');
my %raw0 = map { $_ => raw_of($_, $sid1) } sort keys %mc;
$mark = MsmTest::log_mark($o->error_log);
my @st = map { my $x = client_of($o->url, $sid1)->get('/msm/app.cgi?op=read'); [$x->status, scalar keys %{ $x->session // {} }] } 1 .. 4;
my $oc = client_of($o->url, $sid1);
$r = $oc->get("/msm/app.cgi?op=set&k=data&v=MARK-$TAG-8");
my $osid = $oc->cookie('MSMSESSION') // '';
$log = MsmTest::log_since($mark);
ok(!grep({ $_->[0] != 200 || $_->[1] } @st), '4 reads with a session sealed by another key: 200, no session')
    or diag(join ' ', map { "$_->[0]/$_->[1]" } @st);
my @miss = $log =~ /(MSM00170: [^\n]*)/g;
ok(@miss == 1 && $miss[0] =~ /key id $ID_OLD\b/, 'exactly one MSM00170 line, naming key id ' . $ID_OLD)
    or diag(join "\n", @miss);
ok($r->status == 200 && (MsmTest::cookie_hex($osid) // $sid1) ne MsmTest::cookie_hex($sid1),
   'a save there makes a new id');
ok(!grep({ (raw_of($_, $sid1) // '') ne ($raw0{$_} // 'x') } sort keys %mc),
   'the copies sealed with [old] were not written over');
is(data_of($c1->get('/msm/app.cgi?op=read')), "MARK-$TAG-6", 'and 21420 still serves the session');
ok(MsmTest::wait_until(sub { ids_on($osid) eq "$ID_OTHER $ID_OTHER" }, timeout => 5),
   "the new session's copies carry the other key's id ($ID_OTHER)") or diag(ids_on($osid));
$o->stop;

# ---------------------------------------------------------------- rotation
my ($rc, $rsid) = MsmTest::session_on($url, 'e2', "MARK-$TAG-9");
ok(on_both($rsid) && ids_on($rsid) eq "$ID_OLD $ID_OLD" && ids_on($sid1) eq "$ID_OLD $ID_OLD",
   "before the rotation: sessions sealed with [old] ($ID_OLD)");
my $gen = () = MsmTest::log_since([$h->error_log, 0]) =~ /resuming normal operations/g;
MsmTest::key_file('18-keys', "# rotated: new first\n$K_NEW\n$K_OLD\n");
$h->graceful;
my $restarted = MsmTest::wait_until(sub {
    my $n = () = MsmTest::log_since([$h->error_log, 0]) =~ /resuming normal operations/g;
    return $n > $gen;
}, timeout => 10);
sleep 0.5;                 # the children of the old generation finish
my @reads = map { data_of(client_of($url, $_->[0])->get('/msm/app.cgi?op=read')) } [$rsid], [$sid1];
ok($restarted && $reads[0] eq "MARK-$TAG-9" && $reads[1] eq "MARK-$TAG-6",
   'graceful restart with [new, old]: the sessions sealed with [old] are served') or diag("@reads");
is(ids_on($rsid), "$ID_OLD $ID_OLD", 'a read does not rewrite them');
$r = $rc->get("/msm/app.cgi?op=set&k=data&v=MARK-$TAG-10");
my $rotated = MsmTest::wait_until(sub { ids_on($rsid) eq "$ID_NEW $ID_NEW" }, timeout => 5);
ok($r->status == 200 && $rotated && data_of($rc->get('/msm/app.cgi?op=read')) eq "MARK-$TAG-10",
   "a write seals both copies with [new] ($ID_NEW): bytes 4..7 changed, served")
    or diag(ids_on($rsid));
is($rc->cookie('MSMSESSION'), $rsid, 'without a new id (no logout, no new cookie)');

# ---------------------------------------------------------------- sticky
my $s = app(21425, 'sticky', "MsmEncryptKeyFile $keys_sticky\nMsmSticky On\nMsmRoute a");
ok(MsmTest::wait_nodes_live([qw(e1 e2)], base => $s->url), 'sticky httpd (21425) with a key: nodes live');
my $sc = MsmTest::client(base => $s->url);
$sc->get("/msm/app.cgi?op=set&k=data&v=MARK-$TAG-11");
my $ssid = $sc->cookie('MSMSESSION') // '';
ok($ssid =~ /\.a$/ && on_both($ssid) && ids_on($ssid) eq "$ID_NEW $ID_NEW"
   && !grep({ raw_of($_, $ssid) =~ $SECRETS } sort keys %mc),
   "sticky: both copies in memcached sealed ($ID_NEW), nothing in clear") or diag(ids_on($ssid));
my ($sd, $sops) = ops_of(sub { [map { data_of($sc->get('/msm/app.cgi?op=read')) } 1 .. 5] });
ok(!grep({ $_ ne "MARK-$TAG-11" } @$sd) && $sops->{_sum}{total} == 0,
   '5 sticky reads served from the local tier: 0 memcached operations')
    or diag("@$sd; " . MsmTest::mc_ops_str($sops));
$s->stop;

# ---------------------------------------------------------------- the logs
my $all = join '', map { MsmTest::log_since([$_, 0]) } $h->error_log, $o->error_log, $s->error_log;
my @ids = MsmTest::ids_in($all);
my @keys_logged = grep { index($all, substr($_, 0, 16)) >= 0 } $K_OLD, $K_NEW, $K_OTHER;
ok(!@ids && !@keys_logged && index($all, $PASS) < 0,
   'no error_log line holds a whole session id, a key or the password')
    or diag(scalar(@ids) . ' ids, ' . scalar(@keys_logged) . ' keys');
$h->stop;
$_->stop for values %mc;
