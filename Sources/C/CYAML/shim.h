/* libyaml (Debian's libyaml-dev), linked statically by the PortwatchYAML target: the daemon
 * needs no YAML library at run time. */
#include <yaml.h>
