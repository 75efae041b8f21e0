# Sticky mode, httpd failover: 200 sessions spread by a mod_proxy_balancer
# front over back ends a and b (MsmSticky On, routes a / b). Several workers,
# each owning a subset of the sessions, increment counters for 20 s; at ~6 s
# back end a is killed with SIGKILL (parent and children). Every session must
# go on, on b, with the counter the client saw (no lost update, no lost
# session); the cookies of a's sessions move to route b; the only failures
# allowed are the requests in flight at the kill (at most one per worker).
# b's error_log names the sessions it takes over by their tag, never by their id.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use MsmSticky;
use Time::HiRes qw(time sleep);

plan tests => 16, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my $SESSIONS = 200;
my $WORKERS  = 6;
my $LOAD_S   = 20;
my $KILL_AT  = 6;
my $BACKOFF  = 0.3;

my @mc = MsmSticky::memcacheds();
my %be = (a => MsmSticky::backend('a', servers => 6), b => MsmSticky::backend('b', servers => 6));
my $front = MsmSticky::front(%be, servers => 6);
ok(MsmSticky::wait_ready($front->url), 'front -> back ends -> memcached: a session round trip works');
my $furl = $front->url;

# ---- 200 sessions through the front (worker w creates sessions i with i % W == w)
my $t0 = time;
my @created = MsmTest::parallel($WORKERS, sub {
    my $w = shift;
    my @out;
    for (my $i = $w; $i < $SESSIONS; $i += $WORKERS) {
        my $c = MsmTest::client(base => $furl);
        my $r = $c->get("/msm/app.cgi?op=incr&k=counter");
        push @out, { i => $i, status => $r->status, value => $r->field('value'),
                     cookie => $c->cookie('MSMSESSION') };
    }
    return \@out;
}, timeout => 50);
my @sess;
my @cerr;
for my $res (@created) {
    if (ref $res ne 'ARRAY') { push @cerr, $res->{__error} // 'no result'; next }
    for my $x (@$res) {
        push @cerr, "session $x->{i}: status $x->{status}" unless $x->{status} == 200
            && ($x->{value} // 0) == 1 && $x->{cookie};
        $sess[ $x->{i} ] = $x;
    }
}
my $n_created = grep { $_ && $_->{cookie} } @sess;
is($n_created, $SESSIONS, "$SESSIONS sessions created through the front")
    or diag(join "\n", @cerr[0 .. ($#cerr < 9 ? $#cerr : 9)]);
my %route0;
$route0{ (MsmSticky::cookie_parts($_->{cookie}))[2] // 'none' }++ for grep { $_ } @sess;
ok($route0{a} && $route0{b} && $route0{a} + $route0{b} == $SESSIONS,
   'cookies carry route a (' . ($route0{a} // 0) . ') or b (' . ($route0{b} // 0) . ')')
    or diag(explain \%route0);
diag(sprintf 'created %d sessions in %.1f s: %d on a, %d on b', $n_created, time - $t0,
             $route0{a} // 0, $route0{b} // 0);

# ---- 20 s of load; participant W kills back end a at ~6 s ($h->kill9: it lists
# a's processes, SIGKILLs the parent, then the children); participant W+1
# watches a's port: dead_at = it closed (the last of a's processes is gone).
# A worker whose request failed waits $BACKOFF s before its next one, as a user
# would: while a's killed processes tear down (a few ms), its listening socket
# still accepts connections and resets them - without the pause, a worker whose
# request died at the kill could send another into that window at once.
my $a_pid = $be{a}->pid;
my $ba = $be{a};
my $load_start = time + 0.2;
my @res = MsmTest::parallel($WORKERS + 2, sub {
    my $w = shift;
    sleep 0.01 while time < $load_start;
    if ($w == $WORKERS) {
        sleep 0.005 while time < $load_start + $KILL_AT;
        my $k0 = time;
        $ba->kill9;                # parent + children + CGIs, by pid; waits until gone
        return { kill_start => $k0,
                 port_closed => MsmTest::port_open($ba->port, 0.2) ? 0 : 1 };
    }
    if ($w == $WORKERS + 1) {
        sleep 0.005 while time < $load_start + $KILL_AT;
        my $dead;
        for (1 .. 5000) {              # bounded: <= 5000 probes, ~10 s
            if (!MsmTest::port_open($ba->port, 0.2)) { $dead = time; last }
            sleep 0.002;
        }
        return { dead_at => $dead };
    }
    my @mine = grep { $_->{i} % $WORKERS == $w } grep { $_ } @sess;
    # expected: the counter after the last 2xx; pending: failed requests since
    # then (a failed request may or may not have been applied); applied: failed
    # requests a later answer showed applied
    my %st = map { $_->{i} => { cookie => $_->{cookie}, expected => 1, ok => 0,
                                pending => 0, applied => 0 } } @mine;
    my (@fails, @mismatch, %served, %codes);
    my ($n, $req, $a_last) = (0, 0, 0);
    my $c = MsmTest::client(base => $furl, timeout => 10);
    while (time < $load_start + $LOAD_S && $req < 20000) {
        my $x = $mine[ $n++ % @mine ];
        my $s = $st{ $x->{i} };
        $c->cookie(MSMSESSION => $s->{cookie});
        my $t1 = time;
        my $r = $c->get('/msm/app.cgi?op=incr&k=counter');
        my $t2 = time;
        $req++;
        $codes{ $r->status }++;
        $s->{cookie} = $c->cookie('MSMSESSION') // $s->{cookie};
        if ($r->status =~ /^2/) {
            my $v = $r->field('value') // -1;
            my $extra = $v - $s->{expected} - 1;
            if ($extra > 0 && $extra <= $s->{pending}) { $s->{applied} += $extra }
            elsif ($extra != 0) {
                push @mismatch, "session $x->{i}: got $v, expected " . ($s->{expected} + 1)
                    . ($extra < 0 ? ' (lost update)' : '')
                    . " (" . ($r->header('X-Backend') // '?') . sprintf(' at +%.3f s)', $t2 - $load_start);
            }
            $s->{expected} = $v if $v > 0;     # resync so that one problem is reported once
            $s->{pending} = 0;
            $s->{ok}++;
            my $by = $r->header('X-Backend') // '?';
            $served{$by}++;
            $served{b_after_kill}++ if $by eq 'b' && $t1 > $load_start + $KILL_AT;
            $a_last = $t1 if $by eq 'a' && $t1 > $a_last;     # start of the last request a answered
        }
        else {
            $s->{pending}++;
            push @fails, { i => $x->{i}, worker => $w, status => $r->status, start => $t1, end => $t2,
                           body => substr($r->body, 0, 200) };
            sleep $BACKOFF;
        }
    }
    return { worker => $w, requests => $req, fails => \@fails, mismatch => \@mismatch,
             served => \%served, codes => \%codes, a_last => $a_last,
             sessions => { map { $_ => $st{$_} } keys %st } };
}, timeout => $LOAD_S + 25);

my ($killer) = grep { ref $_ eq 'HASH' && exists $_->{kill_start} } @res;
my ($watcher) = grep { ref $_ eq 'HASH' && exists $_->{dead_at} } @res;
my @workers = grep { ref $_ eq 'HASH' && exists $_->{worker} } @res;
$be{a}->kill9;                              # reap a's parent here (killed in the worker)
ok($killer && $killer->{port_closed} && $watcher && $watcher->{dead_at} && !MsmTest::_alive($a_pid),
   'back end a was killed with SIGKILL (parent and children) during the load')
    or diag(explain [grep { ref $_ eq 'HASH' && $_->{__error} } @res]);
is(scalar @workers, $WORKERS, "$WORKERS load workers finished")
    or diag(explain [grep { ref $_ eq 'HASH' && $_->{__error} } @res]);

my ($total, $a_last, %codes, %served, @fails, @mismatch, %st) = (0, 0);
for my $w (@workers) {
    $total += $w->{requests};
    $a_last = $w->{a_last} if $w->{a_last} > $a_last;
    $codes{$_} += $w->{codes}{$_} for keys %{ $w->{codes} };
    $served{$_} += $w->{served}{$_} for keys %{ $w->{served} };
    push @fails, @{ $w->{fails} };
    push @mismatch, @{ $w->{mismatch} };
    %st = (%st, %{ $w->{sessions} });
}
my $kill_start = $killer ? $killer->{kill_start} : $load_start + $KILL_AT;
my $dead_at    = $watcher && $watcher->{dead_at} ? $watcher->{dead_at} : $kill_start;
diag(sprintf '%d requests in %d s by %d workers (%.0f/s); codes %s; served %s; '
             . 'port of a closed %.3f s after kill9 was called',
             $total, $LOAD_S, $WORKERS, $total / $LOAD_S,
             join(',', map { "$_=$codes{$_}" } sort keys %codes),
             join(',', map { "$_=$served{$_}" } sort keys %served), $dead_at - $kill_start);
ok($served{a} && $served{b} && $served{b_after_kill}, 'both back ends served, b after the kill too');
ok($a_last <= $dead_at, sprintf 'no request sent after a\'s port closed was served by a '
                                 . '(last one sent %.3f s after kill9)', $a_last - $kill_start);

# failures: only requests in flight at the kill: sent before a's port closed,
# answered after kill9 was called, at most one per worker (a worker has one
# request in flight at a time). A request started later finds the port closed
# and the balancer fails it over to b without an error.
my @outside = grep { !($_->{start} <= $dead_at && $_->{end} >= $kill_start) } @fails;
my %per_worker;
$per_worker{ $_->{worker} }++ for @fails;
my @twice = grep { $per_worker{$_} > 1 } sort keys %per_worker;
diag(sprintf 'non-2xx answers: %d (outside the kill: %d; workers: %d)%s',
             scalar @fails, scalar @outside, $WORKERS,
             @fails ? ': ' . join(', ', map { sprintf '%s %.3f-%.3f s (worker %d)', $_->{status},
                                  $_->{start} - $kill_start, $_->{end} - $kill_start, $_->{worker} } @fails) : '');
ok(!@outside && !@twice, 'every non-2xx answer was a request in flight at the kill, at most one per worker')
    or diag(explain [@outside, map { "worker $_: $per_worker{$_} failures" } @twice]);
ok(@fails <= $WORKERS, 'non-2xx answers (' . scalar(@fails) . ") <= workers ($WORKERS)");
diag("non-2xx body: $_->{status} $_->{body}") for grep { $_->{status} != 502 } @fails;

# no lost update while running
ok(!@mismatch, 'every increment answered the previous value + 1 (no lost update)')
    or diag(scalar(@mismatch) . " mismatches:\n" . join "\n", @mismatch[0 .. ($#mismatch < 19 ? $#mismatch : 19)]);

# ---- every session read back through the front: content, route b, nothing lost
my @ids = sort { $a <=> $b } keys %st;
my @check = MsmTest::parallel($WORKERS, sub {
    my $w = shift;
    my @out;
    for my $i (grep { $_ % $WORKERS == $w } @ids) {
        my $c = MsmTest::client(base => $furl);
        $c->cookie(MSMSESSION => $st{$i}{cookie});
        my $r = $c->get('/msm/app.cgi?op=read');
        push @out, { i => $i, status => $r->status, session => $r->session,
                     backend => $r->header('X-Backend'), cookie => $c->cookie('MSMSESSION') };
    }
    return \@out;
}, timeout => 40);
my (@lost, @wrong, @route, @notb);
my $checked = 0;
for my $res (@check) {
    next unless ref $res eq 'ARRAY';
    for my $x (@$res) {
        $checked++;
        # 1 (creation) + the 2xx increments (+ failed ones shown applied, + ones unknown)
        my $s = $st{ $x->{i} };
        my $want = 1 + $s->{ok} + $s->{applied};
        my $got  = ref $x->{session} eq 'HASH' ? $x->{session}{counter} : undef;
        if ($x->{status} != 200 || !defined $got) { push @lost, "session $x->{i}: status $x->{status}" }
        elsif ($got < $want || $got > $want + $s->{pending}) {
            push @wrong, "session $x->{i}: counter $got, client saw $want successful increments"
                . ($s->{pending} ? " (+ $s->{pending} failed)" : '');
        }
        push @route, "session $x->{i}: $x->{cookie}" unless ($x->{cookie} // '') =~ /\.b$/;
        push @notb, $x->{i} unless ($x->{backend} // '') eq 'b';
    }
}
is($checked, $SESSIONS, "all $SESSIONS sessions read back");
ok(!@lost, '0 lost sessions') or diag(scalar(@lost) . " lost:\n" . join "\n", @lost[0 .. ($#lost < 9 ? $#lost : 9)]);
ok(!@wrong, 'every counter equals the successful increments the client saw')
    or diag(scalar(@wrong) . " wrong:\n" . join "\n", @wrong[0 .. ($#wrong < 19 ? $#wrong : 19)]);
ok(!@route && !@notb, 'every cookie now carries route b and b serves every session')
    or diag(scalar(@route) . " cookies not .b, " . scalar(@notb) . " not served by b:\n"
            . join "\n", @route[0 .. ($#route < 9 ? $#route : 9)]);
my $moved = grep { ($sess[$_]{cookie} // '') =~ /\.a$/ } @ids;
my $applied = 0;
$applied += $st{$_}{applied} for @ids;
my $b_takeovers = MsmSticky::counters($be{b})->{takeovers} // 0;
is($b_takeovers, $moved, "b took over each of a's $moved sessions once (msm-status takeovers)");
my $blog = MsmTest::log_since([$be{b}->error_log, 0]);
my @logged_ids = MsmTest::ids_in($blog);
ok(!@logged_ids && $blog =~ /MSM00153: session [0-9a-f]{8} taken over from route a/,
   "b's error_log: takeovers logged by tag (MSM00153), no session id (32 hex digits)")
    or diag(join "\n", grep { my $l = $_; grep { index($l, $_) >= 0 } @logged_ids } split /\n/, $blog);
diag("sessions moved from a to b: $moved; b's takeovers counter: $b_takeovers; "
     . "failed requests later seen applied: $applied; "
     . "increments: " . join(',', map { $st{$_}{ok} } @ids[0 .. 4]) . ',...');

$front->stop;
$be{b}->stop;
