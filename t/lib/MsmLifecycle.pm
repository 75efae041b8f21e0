package MsmLifecycle;
# The CHECKER of the lifecycle test (t/90_lifecycle.t): pure functions over a
# recorded history. t/91_lifecycle_checker.t tests them on hand-written
# histories; t/lib/MsmLifecycleRun.pm records real ones.
#
#   my $res = MsmLifecycle::analyze(\@records, loss_window => 1.0,
#                                   backup_async => 1, locking => 0);
#   $res->{anomalies}{resurrection}   list of { class, op, why, rel => [ops], hex, sid }
#   $res->{lost_by_fault}             list of write ops excused by a fault
#   $res->{stats}                     counters (ops by kind, statuses, faults, ...)
#   print MsmLifecycle::report($res, excerpts => 3);
#   MsmLifecycle::read_history($file) / write_history($file, \@records)  (JSON lines)
#
# RECORDS (one hash each; times are CLOCK_MONOTONIC seconds, floats)
#   op:    { type => 'op', id => 'c3.17', c => client, b => browser,
#            kind => create|read|incr|login|destroy|replay|cross, app => 'A'|'B',
#            burst => id|undef, t0 => sent, t1 => answered (or gave up),
#            status => 200|503|599|..., ck => cookie value sent (undef: none),
#            w => tag this op writes (create/incr/login), sid => create: the new
#            sid; else what the browser believed, user => login's user,
#            in => {session as the app received it} (undef unless a JSON answer),
#            out => {session after}, dw => did_write (0/1), pid => httpd pid,
#            sc => [[cookie value, cleared 0/1], ...] (the Set-Cookie headers of
#            the session cookie, in order), err => text }
#   fault: { type => 'fault', kind => mc_kill9|mc_stop|httpd_graceful|backend_kill9,
#            target => node id | httpd name, t0, t1 }
#   meta:  { type => 'meta', ... } (ignored by the checks; start => time origin)
#
# DEFINITIONS (see t/README.md, "Lifecycle checker")
#   acked op      status 200 with the app's JSON answer; its end is t1.
#   indeterminate anything else (599, 5xx, bad body): its write may take
#                 effect at any time after t0 (end = infinity); never a W2.
#   cookie value  <32 hex>-<node>[.<route>]; the hex is the session's id.
#   hex -> sid    the sid of the answer that first issued the hex (Set-Cookie).
#   dead hex      an acked destroy that wrote (dw=1) on it, or an acked login
#                 whose answer set a cookie with another hex; dead from its t1.
#   writes        create/incr/login ops with a tag w; acked only with dw=1.
#   lost_by_fault an acked write whose primary node (node of the cookie after
#                 it) had a memcached fault (mc_kill9, mc_stop) starting in
#                 [W.t0, W.t1 + loss_window] (loss_window 0 with backup_async 0)
#                 MAY be lost: it is excused, and counted as lost, only when a
#                 read or an increment shows that it was (lazily: an excusable
#                 write that every later read sees is not counted). So may a
#                 write a read R misses when, between W.t0 and R.t1, its
#                 primary node had a fault AND another node was killed
#                 (restarted empty) or cut off (SIGSTOP): both of its copies
#                 may be gone, or the one left predates its node's failure
#                 and is not served (README, "availability after two
#                 faults"; counted again as lost_by_double_fault).
#   G1 resurrection   a read on a hex starting after the hex died shows a sid.
#   G2 stale_read     read tag T of sid S: T never written to S / written by an
#                     op that started after the read ended / overwritten: an
#                     acked non-lost W2 of S with W_T.t1 < W2.t0, W2.t1 < R.t0.
#      lost_session   the read shows nothing on a live hex of S although an
#                     acked non-lost write that stored S under that hex (any op
#                     through it, or the create/login that issued it) ended before
#                     it started, and no destroy/login of that hex was acked or in
#                     flight before the read ended.
#   G3 foreign        the read shows a sid other than its hex's.
#      cross_vhost    an op to app B (cookie of app A) shows any session.
#   G4 lost_increment (locking => 1) two acked non-lost incr of a sid with the
#                     same resulting n, or n(out) != n(in) + 1. Excused (and
#                     counted as lock_lost_by_fault): one of the two held its
#                     lock on a node (the node of its request's cookie) that
#                     had a memcached fault while it ran: a lock dies with
#                     its node.
#   G5 cookie_clobber a non-destroy answer clears the cookie; or an answer to a
#                     request with a dead hex (not create/login) sets any cookie.
use strict;
use warnings;

our @CLASSES = qw(resurrection stale_read lost_session foreign cross_vhost
                  lost_increment cookie_clobber);
our @MC_FAULTS = qw(mc_kill9 mc_stop);
my $INF = 9**9**9;

our $COOKIE_RE = qr/^([0-9a-f]{32})-([A-Za-z0-9_]{1,16})(?:\.([A-Za-z0-9_]{1,16}))?$/;

sub parse_cookie {
    my $v = shift;
    return () unless defined $v;
    my @p = $v =~ $COOKIE_RE;
    return @p;
}

sub classes { @CLASSES }

# ---------------------------------------------------------------- history files

my $JSON;
sub _json {
    return $JSON if $JSON;
    if (eval { require JSON::XS; 1 }) { $JSON = JSON::XS->new->utf8->canonical }
    else { require JSON::PP; $JSON = JSON::PP->new->utf8->canonical }
    return $JSON;
}
sub encode_json_line { _json()->encode($_[0]) . "\n" }
sub decode_json_line { _json()->decode($_[0]) }

sub read_history {
    my $file = shift;
    my @r;
    open my $fh, '<', $file or die "read_history $file: $!\n";
    while (my $l = <$fh>) {
        next unless $l =~ /\S/;
        my $d = eval { decode_json_line($l) };
        push @r, $d if ref $d eq 'HASH';
    }
    close $fh;
    return \@r;
}

sub write_history {
    my ($file, $recs) = @_;
    open my $fh, '>', $file or die "write_history $file: $!\n";
    print $fh encode_json_line($_) for @$recs;
    close $fh or die "write_history $file: $!\n";
    return $file;
}

# ---------------------------------------------------------------- analysis

sub _acked { my $o = shift; return ($o->{status} // 0) == 200 && ref $o->{in} eq 'HASH' }

sub _prep {
    my $o = shift;
    $o->{_ack} = _acked($o) ? 1 : 0;
    $o->{_end} = $o->{_ack} ? $o->{t1} : $INF;
    @{$o}{qw(_hex _node _route)} = parse_cookie($o->{ck});
    my ($setv, $clear);
    for my $sc (@{ $o->{sc} || [] }) {
        if ($sc->[1]) { $clear = 1 } else { $setv = $sc->[0] }
    }
    $o->{_setv} = $setv;
    $o->{_clear} = $clear ? 1 : 0;
    @{$o}{qw(_shex _snode _sroute)} = parse_cookie($setv);
    $o->{_in_sid} = $o->{_ack} ? $o->{in}{sid} : undef;
    return $o;
}

# analyze(\@records, loss_window => 1.0, backup_async => 1, locking => 0)
sub analyze {
    my ($recs, %p) = @_;
    my $window = $p{loss_window} // 1.0;
    $window = 0 if defined $p{backup_async} && !$p{backup_async};
    my %mc_fault = map { $_ => 1 } @{ $p{mc_fault_kinds} || \@MC_FAULTS };

    my (@ops, @faults, $meta);
    for my $r (@$recs) {
        my $t = $r->{type} // 'op';
        if ($t eq 'op') { push @ops, _prep($r) }   # adds _fields in place
        elsif ($t eq 'fault') { push @faults, $r }
        elsif ($t eq 'meta') { $meta = $r }
    }
    @ops = sort { $a->{t0} <=> $b->{t0} || ($a->{id} // '') cmp ($b->{id} // '') } @ops;
    @faults = sort { $a->{t0} <=> $b->{t0} } @faults;
    my %by_id = map { ($_->{id} // '') => $_ } @ops;

    my %st = (ops => scalar @ops, faults => scalar @faults);
    my (%hexsid, %issuer, %dead_at, %killer, %maybe_dead);

    # hex -> sid: the first answer (by t1) that issued the hex
    for my $o (sort { ($a->{t1} // $INF) <=> ($b->{t1} // $INF) } @ops) {
        my $h = $o->{_shex} or next;
        next if exists $hexsid{$h};
        my $sid = $o->{_ack} ? ($o->{out}{sid} // $o->{in}{sid}) : undef;
        $sid //= $o->{kind} eq 'create' ? $o->{sid}
               : defined $o->{_hex} ? $hexsid{ $o->{_hex} } // $o->{sid} : $o->{sid};
        $hexsid{$h} = $sid;
        $issuer{$h} = $o;
        $st{unexpected_new_hex}++
            if !($o->{kind} eq 'create' || $o->{kind} eq 'login')
               && !(defined $o->{_hex} && $o->{_hex} eq $h);
    }

    # dead hexes, and destroys/logins that may have ended a hex
    for my $o (@ops) {
        my $h = $o->{_hex} // next;
        next unless $o->{kind} eq 'destroy' || $o->{kind} eq 'login';
        my $replaced = $o->{kind} eq 'login' && defined $o->{_shex} && $o->{_shex} ne $h;
        if ($o->{_ack} && (($o->{kind} eq 'destroy' && $o->{dw}) || $replaced)) {
            if (!defined $dead_at{$h} || $o->{t1} < $dead_at{$h}) {
                $dead_at{$h} = $o->{t1};
                $killer{$h} = $o;
            }
        }
        # acked without a write: it did not end anything (it saw no session)
        next if $o->{_ack} && !$o->{dw} && !$replaced;
        $maybe_dead{$h} = $o->{t0} if !defined $maybe_dead{$h} || $o->{t0} < $maybe_dead{$h};
    }

    # writes
    my (%writer, %acked_writes, %hex_writes, @lost, %node_faults);
    for my $f (@faults) {
        push @{ $node_faults{ $f->{target} } }, $f if $mc_fault{ $f->{kind} } && defined $f->{target};
    }
    for my $o (@ops) {
        next unless $o->{kind} =~ /^(?:create|incr|login)$/ && defined $o->{w};
        my $wr;
        if ($o->{_ack}) {
            next unless $o->{dw};
            $wr = { op => $o, tag => $o->{w}, sid => $o->{out}{sid} // $o->{in}{sid},
                    t0 => $o->{t0}, t1 => $o->{t1}, end => $o->{t1},
                    node => $o->{_snode} // $o->{_node} };
        }
        else {
            my $sid = $o->{kind} eq 'create' ? $o->{sid}
                    : defined $o->{_hex} ? $hexsid{ $o->{_hex} } // $o->{sid} : $o->{sid};
            $wr = { op => $o, tag => $o->{w}, sid => $sid, t0 => $o->{t0}, t1 => $INF,
                    end => $INF, indet => 1 };
        }
        $writer{ $o->{w} } = $wr;
        next if $wr->{indet};
        # excusable: a fault of its primary node right after it (see $lose)
        if (defined $wr->{node}) {
            for my $f (@{ $node_faults{ $wr->{node} } || [] }) {
                next if $f->{t0} < $wr->{t0};
                last if $f->{t0} > $wr->{t1} + $window;
                $wr->{excuse} = $f;
                last;
            }
        }
        push @{ $acked_writes{ $wr->{sid} // '' } }, $wr;
        # the hex this write stored the session under (a login: the new one)
        my $hx = $o->{_shex} // $o->{_hex};
        push @{ $hex_writes{$hx} }, $wr if defined $hx;
    }
    for my $sid (keys %acked_writes) {
        $acked_writes{$sid} = [ sort { $a->{t1} <=> $b->{t1} } @{ $acked_writes{$sid} } ];
    }
    for my $hx (keys %hex_writes) {
        $hex_writes{$hx} = [ sort { $a->{t1} <=> $b->{t1} } @{ $hex_writes{$hx} } ];
    }

    # A write the history shows missing is lost if it is excusable: it is
    # counted then, and no longer stands against later reads.
    # Two faults before the read R ended: W's primary node failed, and another
    # node (its backup, presumably) was killed (restarted empty) or cut
    # off after W: every node that held W may be gone, or the copy left
    # predates its node's failure and is not served (README, G2 and
    # "availability after two faults").
    my $double_fault = sub {
        my ($wr, $r) = @_;
        return undef unless $r && defined $wr->{node};
        # R takes effect anywhere in [R.t0, R.t1]: a slow read (queued for
        # a child after a graceful restart, say) may run after both faults
        my $in = sub { $_[0]{t0} >= $wr->{t0} && $_[0]{t0} < $r->{t1} };
        my ($mine) = grep { $in->($_) } @{ $node_faults{ $wr->{node} } || [] };
        return undef unless $mine;
        for my $n (keys %node_faults) {
            next if $n eq $wr->{node};
            my ($other) = grep { $mc_fault{ $_->{kind} } && $in->($_) } @{ $node_faults{$n} };
            return { %$mine, double => $other } if $other;
        }
        return undef;
    };
    my $excusable = sub {
        my ($wr, $r) = @_;
        return $wr->{excuse} // $double_fault->($wr, $r);
    };
    my $lose = sub {
        my ($wr, $r) = @_;
        my $excuse = $excusable->($wr, $r) or return 0;
        if (!$wr->{lost}) {
            $wr->{lost} = $excuse;
            $st{lost_by_double_fault}++ if $excuse->{double};
            $wr->{op}{_lost} = 1;
            push @lost, $wr;
        }
        return 1;
    };

    my %an = map { $_ => [] } @CLASSES;
    my $flag = sub {
        my ($class, $o, $why, @rel) = @_;
        push @{ $an{$class} }, { class => $class, op => $o, why => $why,
                                 rel => [ grep { defined } @rel ],
                                 hex => $o->{_hex}, sid => $o->{_hex} ? $hexsid{ $o->{_hex} } : undef };
    };

    # ---- reads: G1, G2, G3
    for my $r (@ops) {
        next unless $r->{_ack};
        if (($r->{app} // 'A') ne 'A') {
            $flag->('cross_vhost', $r, "app $r->{app} showed session sid=$r->{_in_sid} for a cookie of app A")
                if defined $r->{_in_sid};
            next;
        }
        my $h = $r->{_hex} // next;
        my $sid = $hexsid{$h};
        if (!defined $sid) { $st{unmapped_hex}++; next }
        my $dead = defined $dead_at{$h} && $r->{t0} > $dead_at{$h};
        my $in_sid = $r->{_in_sid};
        if (defined $in_sid) {
            if ($dead) {
                # cause: the content read was written by an op overlapping the
                # destroy/login (a racing write landed after it), or it is a copy
                # that survived it (backup, local tier, old node)
                my $k = $killer{$h};
                my $wt = defined $r->{in}{w} ? $writer{ $r->{in}{w} } : undef;
                my $cause = $wt && $wt->{t0} < $k->{t1} && $wt->{end} > $k->{t0}
                          ? 'racing_write' : 'surviving_copy';
                $flag->('resurrection', $r, "hex died at " . _fmt_t($dead_at{$h}, $meta)
                        . " ($k->{kind} $k->{id}); read started later and saw sid=$in_sid w="
                        . ($r->{in}{w} // '-') . " ($cause)", $k, $wt ? $wt->{op} : undef);
                $an{resurrection}[-1]{cause} = $cause;
                next;
            }
            if ($in_sid ne $sid) {
                $flag->('foreign', $r, "hex belongs to sid=$sid, read saw sid=$in_sid", $issuer{$h});
                next;
            }
            my $tag = $r->{in}{w};
            my $wt = defined $tag ? $writer{$tag} : undef;
            if (!$wt || ($wt->{sid} // '') ne $sid) {
                $flag->('stale_read', $r, 'read tag w=' . ($tag // '-') . " never written to sid=$sid",
                        $wt ? $wt->{op} : undef);
                next;
            }
            if ($wt->{t0} > $r->{t1}) {
                $flag->('stale_read', $r, "read tag w=$tag written by an op that started after the read ended",
                        $wt->{op});
                next;
            }
            next if $wt->{end} == $INF;
            for my $w2 (@{ $acked_writes{$sid} || [] }) {
                last if $w2->{t1} >= $r->{t0};
                next unless $w2->{t0} > $wt->{t1};
                next if $lose->($w2, $r);
                $flag->('stale_read', $r, "read w=$tag (" . ($wt->{op}{id} // '?')
                        . ") but w=$w2->{tag} (" . ($w2->{op}{id} // '?') . ') overwrote it before the read began',
                        $wt->{op}, $w2->{op});
                last;
            }
        }
        else {
            next if $dead;
            next if defined $maybe_dead{$h} && $maybe_dead{$h} < $r->{t1};
            # some acked, not lost write stored the session under this hex before
            # the read began (a lost login or create leaves its new hex empty)
            my @before = grep { $_->{t1} < $r->{t0} } @{ $hex_writes{$h} || [] };
            next unless @before;
            # every one of them lost by a fault: excused
            if (!grep { !$excusable->($_, $r) } @before) {
                $lose->($_, $r) for @before;
                next;
            }
            my $last = $before[-1];
            $flag->('lost_session', $r, "saw no session on live hex of sid=$sid; last acked write before it: w="
                    . ($last->{tag} // '-'), $last ? $last->{op} : undef, $issuer{$h});
        }
    }

    # ---- G4: serialized increments
    my $lock_died = sub {
        my $o = shift;
        return 0 unless defined $o->{_node};
        return grep { $_->{t0} < $o->{t1} && $_->{t1} > $o->{t0} }
                    @{ $node_faults{ $o->{_node} } || [] };
    };
    if ($p{locking}) {
        my %by_n;
        for my $o (@ops) {
            next unless $o->{kind} eq 'incr' && $o->{_ack} && $o->{dw} && !$o->{_lost};
            my $wr = $writer{ $o->{w} // '' };
            my ($ni, $no) = ($o->{in}{n}, $o->{out}{n});
            my $sid = $o->{out}{sid} // '';
            if (!defined $ni || !defined $no || $no != $ni + 1) {
                $flag->('lost_increment', $o, 'incr result n=' . ($no // '-') . ' is not read n='
                        . ($ni // '-') . ' + 1');
                next;
            }
            if (my $prev = $by_n{$sid}{$no}) {
                if (grep { $lock_died->($_) } $prev, $o) {
                    $st{lock_lost_by_fault}++;
                    next;
                }
                # the earlier one was lost if a fault excuses it
                my $pw = $writer{ $prev->{w} // '' };
                if (!($pw && $lose->($pw))) {
                    next if $wr && $lose->($wr);
                    $flag->('lost_increment', $o, "sid=$sid: n=$no was already the result of $prev->{id}", $prev);
                    next;
                }
            }
            $by_n{$sid}{$no} = $o;
        }
    }

    # ---- G5: cookies
    for my $o (@ops) {
        next if ($o->{status} // 599) == 599 && !@{ $o->{sc} || [] };
        if ($o->{_clear} && $o->{kind} ne 'destroy') {
            $flag->('cookie_clobber', $o, "a $o->{kind} answer cleared the session cookie");
            next;
        }
        my $h = $o->{_hex};
        if (defined $h && defined $dead_at{$h} && $o->{t0} > $dead_at{$h}
            && $o->{kind} ne 'create' && $o->{kind} ne 'login' && @{ $o->{sc} || [] }) {
            $flag->('cookie_clobber', $o, "answer to a request with a dead hex set a cookie ("
                    . ($o->{_clear} ? 'cleared' : $o->{_setv}) . ')', $killer{$h});
        }
    }

    # ---- statistics
    for my $o (@ops) {
        $st{"kind_$o->{kind}"}++;
        $st{burst_members}++ if defined $o->{burst};
        $st{ 'status_' . ($o->{status} // 'none') }++;
        $st{conn_errors}++ if ($o->{status} // 599) == 599;
        next unless $o->{_ack} || defined $o->{_shex};
        if (defined $o->{_shex} && defined $o->{_hex} && $o->{_shex} eq $o->{_hex}) {
            $st{relocations}++ if $o->{_snode} ne $o->{_node};
            $st{route_changes}++ if ($o->{_sroute} // '') ne ($o->{_route} // '');
        }
        next unless $o->{_ack};
        $st{logins}++   if $o->{kind} eq 'login' && defined $o->{_shex} && defined $o->{_hex}
                           && $o->{_shex} ne $o->{_hex};
        $st{destroys}++ if $o->{kind} eq 'destroy' && $o->{dw};
        $st{acked_writes}++ if $o->{kind} =~ /^(?:create|incr|login)$/ && $o->{dw};
    }
    my %bursts = map { $_->{burst} => 1 } grep { defined $_->{burst} } @ops;
    $st{bursts} = scalar keys %bursts;
    $st{"fault_$_->{kind}"}++ for @faults;
    $st{lost_by_fault} = scalar @lost;
    for my $c (@CLASSES) {
        my %k;
        $k{ $_->{sid} // $_->{hex} // $_->{op}{id} } = 1 for @{ $an{$c} };
        $st{"distinct_$c"} = scalar keys %k;
    }

    return { anomalies => \%an, lost_by_fault => \@lost, stats => \%st, ops => \@ops,
             faults => \@faults, hexsid => \%hexsid, dead_at => \%dead_at, meta => $meta,
             by_id => \%by_id, window => $window };
}

sub anomaly_count {
    my ($res, $class) = @_;
    return scalar @{ $res->{anomalies}{$class} || [] };
}

# ---------------------------------------------------------------- report

sub _origin {
    my $meta = shift;
    return ref $meta eq 'HASH' && defined $meta->{start} ? $meta->{start} : 0;
}

sub _fmt_t {
    my ($t, $meta) = @_;
    return 'inf' if !defined $t || $t == $INF;
    return sprintf '+%.3f', $t - _origin($meta);
}

sub _short_cookie {
    my $v = shift;
    return '-' unless defined $v;
    my ($h, $n, $r) = parse_cookie($v);
    return "'$v'" unless $h;
    return substr($h, 0, 8) . "..-$n" . (defined $r ? ".$r" : '');
}

sub _sess {
    my $s = shift;
    return '-' unless ref $s eq 'HASH';
    return '{}' unless %$s;
    return '{' . join(' ', map { "$_=$s->{$_}" } sort keys %$s) . '}';
}

sub fmt_op {
    my ($o, $origin) = @_;
    my $t1 = $o->{_ack} ? sprintf('%.3f', $o->{t1} - $origin)
           : defined $o->{t1} ? sprintf('%.3f?', $o->{t1} - $origin) : '?';
    my $s = sprintf '%9.3f..%-9s %-8s %-7s%s %s %s', $o->{t0} - $origin, $t1,
        $o->{id} // '?', $o->{kind} // '?', defined $o->{burst} ? '*' : ' ',
        _short_cookie($o->{ck}), $o->{status} // '-';
    $s .= ' w=' . $o->{w} if defined $o->{w} && $o->{kind} ne 'read';
    if ($o->{_ack}) {
        $s .= ' in' . _sess($o->{in});
        $s .= ' out' . _sess($o->{out}) . ' dw' if $o->{dw};
    }
    $s .= ' set=' . join(',', map { $_->[1] ? 'CLEAR' : _short_cookie($_->[0]) } @{ $o->{sc} })
        if @{ $o->{sc} || [] };
    $s .= ' LOST_BY_FAULT' if $o->{_lost};
    $s .= " pid=$o->{pid}" if $o->{pid};
    $s .= " err=$o->{err}" if $o->{err};
    return $s;
}

sub fmt_fault {
    my ($f, $origin) = @_;
    return sprintf '%9.3f..%-9.3f FAULT %s %s', $f->{t0} - $origin, ($f->{t1} // $f->{t0}) - $origin,
        $f->{kind}, $f->{target} // '';
}

# a minimal excerpt: the offending op, the ops it refers to, the ops on the same
# hex/sid around it and the faults of the time window, with relative times
sub excerpt {
    my ($res, $an, %o) = @_;
    my $origin = _origin($res->{meta});
    my $r = $an->{op};
    my $hexsid = $res->{hexsid};
    my $sid = $an->{sid} // $r->{_in_sid};
    my @rel = @{ $an->{rel} || [] };
    my $from = $r->{t0} - ($o{before} // 3);
    for my $x (@rel) { $from = $x->{t0} - 0.2 if $x->{t0} - 0.2 < $from && $x->{t0} > $r->{t0} - 30 }
    my $to = ($r->{_ack} ? $r->{t1} : $r->{t0}) + 0.3;
    my %key = map { ($_->{id} // '') => 1 } @rel, $r;
    my @ctx;
    for my $o (@{ $res->{ops} }) {
        next if $o->{t0} > $to;
        next if ($o->{_ack} ? $o->{t1} : $o->{t0}) < $from && !$key{ $o->{id} // '' };
        my $same = $key{ $o->{id} // '' }
            || (defined $r->{_hex} && defined $o->{_hex} && $o->{_hex} eq $r->{_hex})
            || (defined $sid && (($o->{_hex} && ($hexsid->{ $o->{_hex} } // '') eq $sid)
                                 || ($o->{_ack} && ($o->{in}{sid} // $o->{out}{sid} // '') eq $sid)));
        push @ctx, $o if $same;
    }
    my $max = $o{max_ops} // 14;
    if (@ctx > $max) {
        my @keep = grep { $key{ $_->{id} // '' } } @ctx;
        my @other = grep { !$key{ $_->{id} // '' } } @ctx;
        splice @other, 0, @other - ($max - @keep) if @other > $max - @keep;
        my %k = map { ("$_") => 1 } @keep, @other;
        @ctx = grep { $k{"$_"} } @ctx;
    }
    my @f = grep { ($_->{t1} // $_->{t0}) >= $from - 2 && $_->{t0} <= $to } @{ $res->{faults} };
    my @lines = map { [ $_->{t0}, ($key{ $_->{id} // '' } && $_ == $r ? '>>' : '  ') . fmt_op($_, $origin) ] } @ctx;
    push @lines, [ $_->{t0}, '  ' . fmt_fault($_, $origin) ] for @f;
    my $txt = "$an->{class}: " . ($r->{id} // '?') . ': ' . $an->{why} . "\n";
    $txt .= "    $_->[1]\n" for sort { $a->[0] <=> $b->[0] } @lines;
    return $txt;
}

sub summary_lines {
    my ($res, %o) = @_;
    my $st = $res->{stats};
    my @l;
    my @kinds = qw(create read incr login destroy replay cross);
    push @l, sprintf 'operations: %d (%s; %d bursts, %d burst members)', $st->{ops},
        join(' ', map { "$_=" . ($st->{"kind_$_"} // 0) } @kinds), $st->{bursts} // 0,
        $st->{burst_members} // 0;
    push @l, sprintf 'faults: %d (%s)', $st->{faults},
        join(' ', map { s/^fault_//r . '=' . $st->{$_} } sort grep { /^fault_/ } keys %$st) || 'none';
    push @l, 'anomalies: ' . join(' ', map {
        "$_=" . anomaly_count($res, $_) . (anomaly_count($res, $_) ? '/' . $st->{"distinct_$_"} . 'sid' : '')
    } @{ $o{classes} || \@CLASSES });
    push @l, sprintf 'lost_by_fault: %d (loss window %.2f s; %d of them after two faults)',
        $st->{lost_by_fault} // 0, $res->{window}, $st->{lost_by_double_fault} // 0;
    push @l, 'statuses: ' . join(' ', map { s/^status_//r . '=' . $st->{$_} }
                                        sort grep { /^status_/ } keys %$st);
    push @l, sprintf 'conn errors (599): %d, 503: %d, relocations seen: %d, route changes: %d, '
        . 'logins (new id): %d, destroys: %d, acked writes: %d, unexpected new ids: %d',
        $st->{conn_errors} // 0, $st->{status_503} // 0, $st->{relocations} // 0,
        $st->{route_changes} // 0, $st->{logins} // 0, $st->{destroys} // 0,
        $st->{acked_writes} // 0, $st->{unexpected_new_hex} // 0;
    return @l;
}

# report($res, excerpts => 3, classes => [...], title => 'mode')
sub report {
    my ($res, %o) = @_;
    my $n = $o{excerpts} // 3;
    my $txt = '';
    $txt .= "== $o{title}\n" if defined $o{title};
    $txt .= "$_\n" for summary_lines($res, %o);
    for my $c (@{ $o{classes} || \@CLASSES }) {
        my @a = @{ $res->{anomalies}{$c} || [] };
        next unless @a;
        my (%kinds, %causes);
        $kinds{ $_->{op}{kind} }++ for @a;
        $causes{ $_->{cause} }++ for grep { defined $_->{cause} } @a;
        # the first of each op kind, then the next ones, up to $n
        my (@pick, %seen, %took);
        for my $x (@a) { next if $seen{ $x->{op}{kind} }++; push @pick, $x; $took{"$x"} = 1 }
        push @pick, grep { !$took{"$_"} } @a;
        splice @pick, $n if @pick > $n;
        $txt .= "-- $c: " . scalar(@a) . ' (by op kind: '
            . join(' ', map { "$_=$kinds{$_}" } sort keys %kinds)
            . (%causes ? '; by cause: ' . join(' ', map { "$_=$causes{$_}" } sort keys %causes) : '') . ')'
            . (@pick ? '; ' . scalar(@pick) . " excerpts:\n" : "\n");
        $txt .= excerpt($res, $_) for sort { $a->{op}{t0} <=> $b->{op}{t0} } @pick;
    }
    return $txt;
}

1;
