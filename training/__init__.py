"""Training, evaluation, registration and the Kestra flow (issue "Models"). Not built yet; the
package exists so the layout of DESIGN.md is in place."""
