// Internal helpers shared by the CPU and CUDA sources (not part of the public API).
#pragma once
#include <stdexcept>
#include <string>

// Throw std::runtime_error with the failed statement, a message and file:line. JavaCPP's glue
// turns it into a Java RuntimeException; the library never exits or aborts.
#define LORA4J_CHECK(cond, msg)                                                              \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      throw std::runtime_error(std::string("lora4j: ") + (msg) + " (check `" #cond "` at " + \
                               __FILE__ + ":" + std::to_string(__LINE__) + ")");             \
    }                                                                                        \
  } while (0)
