#!/usr/bin/perl
# mod_msm test application (CGI, dependency-free).
#
# Reads the session from env HTTP_SESSION (mod_session "SessionEnv On": url-encoded
# k=v&k2=v2, may hold expiry=..., which is ignored) and writes it by emitting the
# response header X-Replace-Session (mod_session "SessionHeader X-Replace-Session";
# the pairs are merged into the session, an empty value removes a key).
#
#   ?op=read                    JSON of the session, no write
#   ?op=set&k=K&v=V[&k2=..&v2=..]  sets K=V (and K2=V2 ...); answers the new session
#   ?op=incr&k=counter          counter+1 (missing counts as 0); "value" is the new value
#   ?op=destroy                 removes every key
#   ?op=sleep&ms=N              sleeps N ms (max 60000), then acts like read
#                               (combine: ?op=incr&k=c&sleep_ms=N sleeps before writing)
#   ?op=env                     JSON of the CGI environment (debugging)
#   &status=NNN                 answer with that HTTP status
#
# Every JSON body holds: op, app ("cgi"; app.php, its php-fpm twin under
# scripts/test.sh --fpm: "php-fpm"), pid (getppid(): the httpd child under mod_cgi),
# session (hash after the operation), session_in (hash as received), raw (HTTP_SESSION).
use strict;
use warnings;
use JSON::PP ();
use Time::HiRes ();

sub url_decode {
    my $s = shift;
    return '' unless defined $s;
    $s =~ tr/+/ /;
    $s =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge;
    return $s;
}

sub url_encode {
    my $s = shift;
    $s = '' unless defined $s;
    $s =~ s/([^A-Za-z0-9_.~-])/sprintf('%%%02X', ord($1))/ge;
    return $s;
}

sub parse_pairs {
    my $str = shift;
    my (%h, @order);
    return (\%h, \@order) unless defined $str && length $str;
    for my $pair (split /[&;]/, $str) {
        next unless length $pair;
        my ($k, $v) = split /=/, $pair, 2;
        $k = url_decode($k);
        push @order, $k unless exists $h{$k};
        $h{$k} = url_decode($v);
    }
    return (\%h, \@order);
}

my ($q, $qorder) = parse_pairs($ENV{QUERY_STRING});
my $raw = $ENV{HTTP_SESSION};
my ($in) = parse_pairs($raw);
delete $in->{expiry};
my %session = %$in;
my $op = $q->{op} // 'read';
my @headers;
my %extra;

sub write_session {
    my %changes = @_;
    my $hdr = join '&', map { url_encode($_) . '=' . url_encode($changes{$_}) }
                        sort keys %changes;
    # an empty header would not be seen by mod_session; removing nothing is a no-op
    push @headers, "X-Replace-Session: $hdr" if length $hdr;
    for (keys %changes) {
        if (length $changes{$_}) { $session{$_} = $changes{$_} }
        else                     { delete $session{$_} }
    }
}

if (my $ms = $q->{sleep_ms} // ($op eq 'sleep' ? $q->{ms} : undef)) {
    $ms = 60000 if $ms > 60000;
    Time::HiRes::sleep($ms / 1000) if $ms > 0;
}

if ($op eq 'read' || $op eq 'sleep') {
    # nothing to write
}
elsif ($op eq 'set') {
    my %ch;
    for my $i ('', 2 .. 20) {
        next unless defined $q->{"k$i"};
        $ch{ $q->{"k$i"} } = $q->{"v$i"} // '';
    }
    write_session(%ch);
}
elsif ($op eq 'incr') {
    my $k = $q->{k} // 'counter';
    my $v = ($session{$k} // 0);
    $v = 0 unless $v =~ /^-?\d+$/;
    $v++;
    write_session($k => $v);
    $extra{value} = $v + 0;
}
elsif ($op eq 'destroy') {
    write_session(map { $_ => '' } keys %session);
}
elsif ($op eq 'env') {
    $extra{env} = {%ENV};
}
else {
    print "Status: 400 Bad Request\r\nContent-Type: text/plain\r\n\r\nunknown op '$op'\n";
    exit 0;
}

my $status = $q->{status};
my $body = JSON::PP->new->canonical->encode({
    op         => $op,
    app        => 'cgi',
    pid        => getppid(),
    session    => \%session,
    session_in => $in,
    raw        => $raw,
    %extra,
});

print "Status: $status\r\n" if $status && $status =~ /^\d{3}$/;
print "$_\r\n" for @headers;
print "Content-Type: application/json\r\n";
print "Cache-Control: no-store\r\n";
print "\r\n";
print $body, "\n";
