# CyrsyncCassFix -- load with `perl -I<dir> -MCyrsyncCassFix testrunner.pl`
# from a Cassandane directory.
#
# Why: Debian bookworm's perl (5.36) no longer clears a handle's EOF flag
# when it is read again (https://github.com/Perl/perl5/issues/21240).
# Cassandane 3.6.1 tails the instance's syslog through one IO::File and
# calls getlines() on it from getsyslog(); once EOF was seen it returns
# nothing for the rest of the test, so every test that looks for a log
# line fails and the end-of-test syslog error scan silently reads nothing.
# Upstream Cassandane (3.12.x) fixed it the same way: clearerr() before
# reading.  We wrap getsyslog() instead of patching Cassandane so the
# Cyrus tree stays untouched; on versions that already clear the flag
# the extra clearerr() is harmless.
#
# Second fix: Cassandane 3.10's TestCase::_setup_http_service_objects()
# requires Mail::JMAPTalk, Net::CalDAVTalk and Net::CardDAVTalk in every
# test's set_up before it looks whether the instance has an http service
# at all (3.6 and 3.12 look first); bookworm packages none of them, so
# every Replication and Backups test died in set_up.  As 3.12 does: no
# http(s) service, nothing to require, nothing to set up.  A test with an
# http service still goes through the original.
package CyrsyncCassFix;
use strict;
use warnings;

BEGIN { unshift @INC, '.' unless grep { $_ eq '.' } @INC; }
require Cassandane::Instance;

{
    no warnings 'redefine';
    my $orig = \&Cassandane::Instance::getsyslog;
    *Cassandane::Instance::getsyslog = sub {
        my ($self) = @_;
        my $fh = $self->{_syslogfh};
        $fh->clearerr() if $fh;
        goto &$orig;
    };
}

if (eval { require Cassandane::Cyrus::TestCase; 1 }
    && defined &Cassandane::Cyrus::TestCase::_setup_http_service_objects)
{
    no warnings 'redefine';
    my $orig = \&Cassandane::Cyrus::TestCase::_setup_http_service_objects;
    *Cassandane::Cyrus::TestCase::_setup_http_service_objects = sub {
        my ($self) = @_;
        my $inst = $self->{instance};
        return if $inst && $inst->can('get_service')
                  && !$inst->get_service('https') && !$inst->get_service('http');
        goto &$orig;
    };
}

1;
