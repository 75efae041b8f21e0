# Cross-session mix-ups between the threads of one child (and between
# children): 48 sessions, each with a marker of its own, driven by 16 parallel
# clients for 5 s through the Apache::Test server's /msm/ (3 children; under
# scripts/test.sh --mpm event each has 16 threads, so requests of different
# sessions run side by side in one process; with --fpm the app is php-fpm).
# Each client owns 3 sessions (no two clients touch one session, so nothing may
# be lost without locking) and increments their counters on keep-alive
# connections. Every answer must carry its own session's marker, its own id in
# any Set-Cookie, and exactly the count its owner expects; at the end every
# counter equals the number of increments that answered 200.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use MsmTest;
use Time::HiRes qw(time);

plan tests => 4, need { 'mod_msm is not loaded (scripts/test.sh --no-module?)' => MsmTest::have_msm() };

my %mc = map { $_ => MsmTest::memcached(port => $_) } 21301, 21302, 21303;
my ($CLIENTS, $PER, $SECS) = (16, 3, 5);

# the sessions: id => marker
my @sessions;
for my $i (1 .. $CLIENTS * $PER) {
    my $marker = "m$i-" . MsmTest::random_hex();
    my $c = MsmTest::client();
    my $r = $c->get("/msm/app.cgi?op=set&k=marker&v=$marker&k2=n&v2=0");
    push @sessions, { sid => $c->cookie('MSMSESSION') // '', marker => $marker }
        if $r->status == 200;
}
my %distinct = map { $_->{sid} => 1 } grep { $_->{sid} } @sessions;
is(scalar(keys %distinct), $CLIENTS * $PER, ($CLIENTS * $PER) . ' sessions with distinct ids and markers');

my @res = MsmTest::parallel($CLIENTS, sub {
    my $me = shift;
    my @mine = @sessions[$me * $PER .. $me * $PER + $PER - 1];
    my @conn = map { my $c = MsmTest::client(timeout => 20); $c->cookie(MSMSESSION => $_->{sid}); $c } @mine;
    my @n = (0) x $PER;
    my ($ok, $bad, @why) = (0, 0);
    my $end = time + $SECS;
    while (time < $end) {
        my $k = int rand $PER;
        my $r = $conn[$k]->get('/msm/app.cgi?op=incr&k=n');
        my $s = $r->session // {};
        my $sid = $conn[$k]->cookie('MSMSESSION') // '';
        if ($r->status == 200 && ($s->{marker} // '') eq $mine[$k]{marker}
            && ($s->{n} // -1) == $n[$k] + 1 && $sid eq $mine[$k]{sid}) {
            $n[$k]++;
            $ok++;
        }
        else {
            $bad++;
            push @why, sprintf('status %s marker %s (want %s) n %s (want %d) cookie %s',
                               $r->status, $s->{marker} // '-', $mine[$k]{marker}, $s->{n} // '-',
                               $n[$k] + 1, $sid eq $mine[$k]{sid} ? 'same' : 'CHANGED') if @why < 5;
            last if $bad >= 20;
        }
    }
    return { ok => $ok, bad => $bad, why => \@why, n => { map { ($mine[$_]{sid} => $n[$_]) } 0 .. $PER - 1 } };
}, timeout => $SECS + 60);

my ($ok, $bad, @why, %want) = (0, 0);
for (@res) {
    if ($_->{__error}) { $bad++; push @why, $_->{__error}; next }
    $ok += $_->{ok};
    $bad += $_->{bad};
    push @why, @{ $_->{why} };
    %want = (%want, %{ $_->{n} });
}
# enough traffic for the hunt to mean something: 16 clients for 5 s made ~300
# increments through mod_cgi (a Perl process per request) and ~3900 through
# php-fpm on this 2-core machine while other suites ran
cmp_ok($ok, '>=', 100, "$ok increments answered by $CLIENTS parallel clients");
is($bad, 0, "every answer carried its own session's marker, id and count ($bad did not)")
    or diag(join "\n", @why);

my @wrong;
for my $s (@sessions) {
    my $c = MsmTest::client();
    $c->cookie(MSMSESSION => $s->{sid});
    my $got = $c->get('/msm/app.cgi?op=read')->session // {};
    push @wrong, "$s->{marker}: n $got->{n} (want $want{ $s->{sid} }), marker " . ($got->{marker} // '-')
        unless ($got->{marker} // '') eq $s->{marker} && ($got->{n} // -1) == ($want{ $s->{sid} } // -2);
}
is(scalar(@wrong), 0, 'afterwards every session holds its own marker and exactly its increments')
    or diag(join "\n", @wrong[0 .. ($#wrong < 9 ? $#wrong : 9)]);
